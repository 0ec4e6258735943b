// cim_json.h: a small JSON reader for the vector-set manifest.
//
// The example initiator reads manifest.json without a third-party library so
// that the only build dependencies stay SystemC and Verilator. Objects keep
// their key order: the manifest's "registers" object lists the registers in
// the order of the runK_regs.hex files.

#ifndef CIM_JSON_H_
#define CIM_JSON_H_

#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace cim {

class Json {
 public:
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::kNull; }
  bool is_object() const { return kind_ == Kind::kObject; }
  bool is_array() const { return kind_ == Kind::kArray; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_number() const { return kind_ == Kind::kNumber; }

  // Accessors throw std::runtime_error naming `where` (a JSON path) on a kind
  // mismatch, so that a malformed manifest is reported, never dereferenced.
  const std::string& str() const {
    expect(Kind::kString, "a string");
    return text_;
  }
  int64_t integer() const {
    expect(Kind::kNumber, "a number");
    if (!is_int_) fail("is not an integer");
    return int_;
  }
  double number() const {
    expect(Kind::kNumber, "a number");
    return is_int_ ? static_cast<double>(int_) : real_;
  }
  bool boolean() const {
    expect(Kind::kBool, "true or false");
    return bool_;
  }
  const std::vector<Json>& items() const {
    expect(Kind::kArray, "an array");
    return items_;
  }
  const std::vector<std::pair<std::string, Json>>& members() const {
    expect(Kind::kObject, "an object");
    return members_;
  }
  bool has(const std::string& key) const {
    if (kind_ != Kind::kObject) return false;
    for (const auto& m : members_) {
      if (m.first == key) return true;
    }
    return false;
  }
  const Json& operator[](const std::string& key) const {
    expect(Kind::kObject, "an object");
    for (const auto& m : members_) {
      if (m.first == key) return m.second;
    }
    fail("has no key \"" + key + "\"");
    return *this;  // not reached
  }
  const Json& operator[](size_t i) const {
    const auto& v = items();
    if (i >= v.size()) fail("has no item " + std::to_string(i));
    return v[i];
  }
  const std::string& where() const { return where_; }

  static Json parse(const std::string& text, const std::string& origin) {
    Parser p{text, 0, origin};
    p.skip_ws();
    Json v = p.value("$");
    p.skip_ws();
    if (p.pos != text.size()) p.error("trailing characters");
    return v;
  }

 private:
  struct Parser {
    const std::string& s;
    size_t pos;
    std::string origin;

    [[noreturn]] void error(const std::string& what) const {
      throw std::runtime_error(origin + ": JSON error at byte " + std::to_string(pos) + ": " +
                               what);
    }
    void skip_ws() {
      while (pos < s.size() && (s[pos] == ' ' || s[pos] == '\n' || s[pos] == '\r' ||
                                s[pos] == '\t')) {
        ++pos;
      }
    }
    bool take(const char* word) {
      size_t n = std::char_traits<char>::length(word);
      if (s.compare(pos, n, word) == 0) {
        pos += n;
        return true;
      }
      return false;
    }
    Json value(const std::string& path) {
      Json v;
      v.where_ = path;
      if (pos >= s.size()) error("unexpected end");
      char c = s[pos];
      if (c == '{') {
        v.kind_ = Kind::kObject;
        ++pos;
        skip_ws();
        if (pos < s.size() && s[pos] == '}') {
          ++pos;
          return v;
        }
        for (;;) {
          skip_ws();
          if (pos >= s.size() || s[pos] != '"') error("expected a key");
          std::string key = string();
          skip_ws();
          if (pos >= s.size() || s[pos] != ':') error("expected ':'");
          ++pos;
          skip_ws();
          v.members_.emplace_back(key, value(path + "." + key));
          skip_ws();
          if (pos < s.size() && s[pos] == ',') {
            ++pos;
            continue;
          }
          if (pos < s.size() && s[pos] == '}') {
            ++pos;
            return v;
          }
          error("expected ',' or '}'");
        }
      }
      if (c == '[') {
        v.kind_ = Kind::kArray;
        ++pos;
        skip_ws();
        if (pos < s.size() && s[pos] == ']') {
          ++pos;
          return v;
        }
        for (;;) {
          skip_ws();
          v.items_.push_back(value(path + "[" + std::to_string(v.items_.size()) + "]"));
          skip_ws();
          if (pos < s.size() && s[pos] == ',') {
            ++pos;
            continue;
          }
          if (pos < s.size() && s[pos] == ']') {
            ++pos;
            return v;
          }
          error("expected ',' or ']'");
        }
      }
      if (c == '"') {
        v.kind_ = Kind::kString;
        v.text_ = string();
        return v;
      }
      if (take("true")) {
        v.kind_ = Kind::kBool;
        v.bool_ = true;
        return v;
      }
      if (take("false")) {
        v.kind_ = Kind::kBool;
        v.bool_ = false;
        return v;
      }
      if (take("null")) return v;
      return number(std::move(v));
    }
    Json number(Json v) {
      size_t start = pos;
      bool real = false;
      if (pos < s.size() && s[pos] == '-') ++pos;
      while (pos < s.size()) {
        char c = s[pos];
        if (c >= '0' && c <= '9') {
          ++pos;
        } else if (c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
          real = true;
          ++pos;
        } else {
          break;
        }
      }
      if (pos == start) error("unexpected character");
      std::string tok = s.substr(start, pos - start);
      v.kind_ = Kind::kNumber;
      char* end = nullptr;
      if (real) {
        v.real_ = std::strtod(tok.c_str(), &end);
      } else {
        v.is_int_ = true;
        v.int_ = std::strtoll(tok.c_str(), &end, 10);
      }
      if (end == nullptr || *end != '\0') error("bad number " + tok);
      return v;
    }
    std::string string() {
      std::string out;
      ++pos;  // opening quote
      while (pos < s.size() && s[pos] != '"') {
        char c = s[pos++];
        if (c != '\\') {
          out.push_back(c);
          continue;
        }
        if (pos >= s.size()) break;
        char e = s[pos++];
        switch (e) {
          case 'n': out.push_back('\n'); break;
          case 't': out.push_back('\t'); break;
          case 'r': out.push_back('\r'); break;
          case 'b': out.push_back('\b'); break;
          case 'f': out.push_back('\f'); break;
          case 'u': {
            if (pos + 4 > s.size()) error("short \\u escape");
            unsigned cp = static_cast<unsigned>(std::strtoul(s.substr(pos, 4).c_str(), nullptr,
                                                             16));
            pos += 4;
            // The manifest is ASCII; other code points are kept as UTF-8.
            if (cp < 0x80) {
              out.push_back(static_cast<char>(cp));
            } else if (cp < 0x800) {
              out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
              out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
            } else {
              out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
              out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
              out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
            }
            break;
          }
          default: out.push_back(e);
        }
      }
      if (pos >= s.size()) error("unterminated string");
      ++pos;  // closing quote
      return out;
    }
  };

  void expect(Kind k, const char* what) const {
    if (kind_ != k) fail(std::string("is not ") + what);
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("manifest " + where_ + " " + what);
  }

  Kind kind_ = Kind::kNull;
  bool bool_ = false;
  bool is_int_ = false;
  int64_t int_ = 0;
  double real_ = 0.0;
  std::string text_;
  std::vector<Json> items_;
  std::vector<std::pair<std::string, Json>> members_;
  std::string where_;
};

}  // namespace cim

#endif  // CIM_JSON_H_
