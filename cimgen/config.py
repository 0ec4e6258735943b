"""Crossbar and machine configuration: flat TOML keys, ``--set KEY=VALUE`` overrides.

Defaults follow CIM-Explorer (256x256 arrays, HRS/LRS = 5/50 uA). Currents
are converted to integers in units of ``current_lsb_ua`` before any model
sees them, so the golden machine and the RTL compute on the same integers.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, fields

from golden_model.errors import BadInputError
from golden_model.physics import NOISE_MODELS, ReadPhysics

MAPPINGS = ("BNN_I", "BNN_II", "BNN_III", "BNN_IV", "BNN_V", "BNN_VI",
            "TNN_I", "TNN_II", "TNN_III", "TNN_IV", "TNN_V")
# ADC range policies (cimgen/compiler/adc.py has the formulas).
ADC_RANGES = ("max", "calib", "cimx_max", "cimx_calib")


@dataclass(frozen=True)
class XbarConfig:
    mapping: str = "BNN_I"
    rows: int = 256
    cols: int = 256
    num_xbars: int = 16
    # Cell read currents (uA) and their integer unit.
    hrs_ua: float = 5.0
    lrs_ua: float = 50.0
    current_lsb_ua: float = 0.05
    # Device-to-device variability, sampled once per cell from ``seed``.
    variability: str = "gaussian"  # gaussian (clipped at 0) | lognormal
    sigma_hrs_ua: float = 0.0
    sigma_lrs_ua: float = 0.0
    stuck_lrs_rate: float = 0.0
    stuck_hrs_rate: float = 0.0
    # Cycle-to-cycle read noise (re-sampled at every read from a counter-based RNG):
    # per driven cell ("cell") or per column sum ("column"), golden_model/physics.py.
    sigma_read_ua: float = 0.0
    read_noise: str = "cell"
    # IR drop: wire resistance per cell pitch on word and bit lines (0 = none),
    # relative to the read voltage v_read (below, shared with the energy model).
    wire_ohm: float = 0.0
    # Read disturb: an LRS cell read s times since written carries
    # (1 + s / disturb_onset_reads) ** -disturb_exponent of its current (onset 0 = off);
    # rows written before a run have been read disturb_age_reads times.
    disturb_onset_reads: int = 0
    disturb_exponent: float = 0.05
    disturb_age_reads: int = 0
    # ADC: 0 = ideal (rounds to the nearest count); range policy, one of ADC_RANGES.
    adc_bits: int = 0
    adc_range: str = "max"
    adcs_per_xbar: int = 0  # ADCs shared by a crossbar's columns; 0 = one per column
    seed: int = 0
    # Memories (words) and timing (cycles).
    prog_words: int = 1 << 20
    dmem_words: int = 1 << 18
    wmem_words: int = 1 << 16
    adc_tables: int = 64
    vec_width: int = 8
    t_read: int = 2
    t_adc: int = 1
    # Inputs per program run: the chip runs a whole batch through each weight
    # residency before it reprograms. 0 = auto: 1 when every tile fits the
    # crossbars at once, else the largest power of two <= 256 that DMEM holds.
    batch: int = 0
    # PROG (one row) is a write-verify loop: write_verify_iters x (pulse + verify)
    # cycles. t_write > 0 overrides it with a measured row-write time in cycles.
    t_write: int = 0
    t_write_pulse: int = 10
    t_verify: int = 2
    write_verify_iters: int = 8
    # Energy and time model (every default and its source: docs/energy.md).
    clock_mhz: float = 100.0
    v_read: float = 0.2  # V across a driven cell during a READ
    v_write: float = 2.0  # SET/RESET pulse amplitude (V)
    i_write_ua: float = 100.0  # cell current during a write pulse (compliance, uA)
    adc_fom_fj: float = 10.0  # Walden figure of merit, fJ per conversion step
    e_digital_pj: float = 0.1  # one vector-unit lane operation (32-bit add)
    e_dmem_pj: float = 5.0  # one 32-bit data-memory word access
    endurance_writes: float = 1e6  # write cycles a cell survives
    inference_rate_hz: float = 1000.0  # for the projected lifetime
    # BasisN: width of a coefficient (CMAC), and basis vectors to fit when a plain
    # model is compiled in basis mode (0: no basis mode).
    coef_bits: int = 8
    basis_count: int = 0
    # Calibration batch size for the calibrated ranges (calib, cimx_calib).
    calib_images: int = 64

    @property
    def is_ideal(self) -> bool:
        return (self.adc_bits == 0 and self.sigma_hrs_ua == 0 and self.sigma_lrs_ua == 0
                and self.stuck_lrs_rate == 0 and self.stuck_hrs_rate == 0
                and self.sigma_read_ua == 0 and self.wire_ohm == 0
                and self.disturb_onset_reads == 0)

    def read_physics(self) -> ReadPhysics:
        """The non-ideal read parameters in machine units (golden_model.physics)."""
        gw = (self.v_read / (self.wire_ohm * self.current_lsb_ua * 1e-6)
              if self.wire_ohm > 0 else 0.0)
        on = self.disturb_onset_reads > 0 and self.disturb_exponent > 0
        return ReadPhysics(seed=self.seed, sigma_units=self.sigma_read_ua / self.current_lsb_ua,
                           noise=self.read_noise, wire_g_units=gw,
                           disturb_n0=self.disturb_onset_reads if on else 0,
                           disturb_p=self.disturb_exponent if on else 0.0,
                           disturb_age=self.disturb_age_reads if on else 0)

    @property
    def adcs(self) -> int:
        return self.adcs_per_xbar or self.cols

    @property
    def prog_cycles(self) -> int:
        """Cycles of one PROG: the write-verify loop of one crossbar row."""
        return self.t_write or self.write_verify_iters * (self.t_write_pulse + self.t_verify)

    @property
    def hrs_units(self) -> int:
        return round(self.hrs_ua / self.current_lsb_ua)

    @property
    def lrs_units(self) -> int:
        return round(self.lrs_ua / self.current_lsb_ua)

    def validate(self, where: str = "config") -> XbarConfig:
        def bad(key: str, msg: str) -> BadInputError:
            return BadInputError(f"{key}: {msg}", where=where)

        if self.mapping not in MAPPINGS:
            raise bad("mapping", f"'{self.mapping}' is not one of {', '.join(MAPPINGS)}")
        for key in ("rows", "cols", "num_xbars", "prog_words", "dmem_words",
                    "wmem_words", "adc_tables", "vec_width", "t_read", "t_adc",
                    "t_write_pulse", "t_verify", "write_verify_iters", "calib_images"):
            if getattr(self, key) < 1:
                raise bad(key, f"must be >= 1, got {getattr(self, key)}")
        for key in ("batch", "t_write"):
            if getattr(self, key) < 0:
                raise bad(key, f"must be >= 0, got {getattr(self, key)}")
        if not 2 <= self.coef_bits <= 8:
            raise bad("coef_bits", f"must be within 2..8 (a signed coefficient field of a "
                      f"weight-memory row), got {self.coef_bits}")
        if self.basis_count < 0:
            raise bad("basis_count", f"must be >= 0, got {self.basis_count}")
        if self.batch > 65535:
            raise bad("batch", f"at most 65535 (the LOOP.count field), got {self.batch}")
        for key in ("clock_mhz", "v_read", "v_write", "i_write_ua", "adc_fom_fj",
                    "e_digital_pj", "e_dmem_pj", "endurance_writes", "inference_rate_hz"):
            if not getattr(self, key) > 0:
                raise bad(key, f"must be > 0, got {getattr(self, key)}")
        if self.rows < 2 or self.cols < 2 or self.rows > 1024 or self.cols > 1024:
            raise bad("rows/cols", "array size must be within 2..1024")
        if self.num_xbars > 256:
            raise bad("num_xbars", "at most 256 crossbars")
        # Memory sizes the instruction fields can address (golden_model/isa.py).
        from golden_model.isa import BY_NAME

        for key, op, fname in (("dmem_words", "STA", "dst"), ("wmem_words", "PROG", "wsrc"),
                               ("adc_tables", "READ", "adc")):
            limit = BY_NAME[op].field(fname).hi + 1
            if getattr(self, key) > limit:
                raise bad(key, f"at most {limit} (the {op}.{fname} field), got "
                          f"{getattr(self, key)}")
        if self.current_lsb_ua <= 0:
            raise bad("current_lsb_ua", "must be > 0")
        if not 0 < self.hrs_ua < self.lrs_ua:
            raise bad("hrs_ua/lrs_ua", f"need 0 < hrs_ua < lrs_ua, got {self.hrs_ua}/"
                      f"{self.lrs_ua}")
        if self.hrs_units == self.lrs_units:
            raise bad("current_lsb_ua", "too coarse: HRS and LRS map to the same integer")
        if self.lrs_units * self.rows * 2 >= 2**31:
            raise bad("current_lsb_ua", "too fine: column currents overflow 32 bits")
        if self.variability not in ("gaussian", "lognormal"):
            raise bad("variability", f"'{self.variability}' is not gaussian or lognormal")
        for key in ("sigma_hrs_ua", "sigma_lrs_ua", "sigma_read_ua", "wire_ohm",
                    "disturb_exponent", "disturb_onset_reads", "disturb_age_reads"):
            if getattr(self, key) < 0:
                raise bad(key, "must be >= 0")
        if self.read_noise not in NOISE_MODELS:
            raise bad("read_noise", f"'{self.read_noise}' is not one of "
                      f"{', '.join(NOISE_MODELS)}")
        if self.v_read <= 0:
            raise bad("v_read", "must be > 0")
        if self.disturb_age_reads >= 2**62 or self.disturb_onset_reads >= 2**62:
            raise bad("disturb_age_reads", "too large (at most 2**62 reads)")
        for key in ("stuck_lrs_rate", "stuck_hrs_rate"):
            if not 0 <= getattr(self, key) <= 1:
                raise bad(key, "must be a probability in [0, 1]")
        if self.stuck_lrs_rate + self.stuck_hrs_rate > 1:
            raise bad("stuck_lrs_rate", "stuck_lrs_rate + stuck_hrs_rate must be <= 1")
        if not 0 <= self.adc_bits <= 12:
            raise bad("adc_bits", "must be 0 (ideal) or 1..12")
        if self.adc_bits and (1 << self.adc_bits) - 1 > 2 * self.rows:
            raise bad("adc_bits", f"{self.adc_bits} bits need {(1 << self.adc_bits) - 1} "
                      f"thresholds, an ADC table holds 2 * rows = {2 * self.rows}")
        if self.adc_range not in ADC_RANGES:
            raise bad("adc_range", f"'{self.adc_range}' is not one of {', '.join(ADC_RANGES)}")
        if not 0 <= self.adcs_per_xbar <= self.cols:
            raise bad("adcs_per_xbar", f"must be within 0..cols ({self.cols}), 0 = one per column")
        if not 0 <= self.seed < 2**63:
            raise bad("seed", "must be a non-negative 63-bit integer")
        return self

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


_FIELDS = {f.name: f for f in fields(XbarConfig)}


def _coerce(key: str, value: object, where: str) -> object:
    f = _FIELDS[key]
    typ = f.type if isinstance(f.type, type) else {"int": int, "float": float, "str": str,
                                                   "bool": bool}[str(f.type)]
    try:
        if typ is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)  # type: ignore[arg-type]
        if typ is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)  # type: ignore[arg-type]
        if typ is str:
            if not isinstance(value, str):
                raise ValueError
            return value
    except (TypeError, ValueError):
        pass
    raise BadInputError(f"{key}: expected {typ.__name__}, got {value!r}", where=where)


def parse_set(items: list[str] | None) -> dict[str, object]:
    """``KEY=VALUE`` strings -> raw dict (values typed later against the schema)."""
    out: dict[str, object] = {}
    for item in items or []:
        if "=" not in item:
            raise BadInputError(f"'{item}' is not KEY=VALUE", where="--set")
        k, v = item.split("=", 1)
        k = k.strip()
        if k not in _FIELDS:
            raise BadInputError(f"unknown key '{k}' (known: {', '.join(_FIELDS)})", where="--set")
        typ = str(_FIELDS[k].type)
        raw: object = v.strip()
        if typ in ("int", "float") or _FIELDS[k].type in (int, float):
            try:
                raw = float(v) if ("." in v or "e" in v.lower()) else int(v, 0)
            except ValueError:
                raise BadInputError(f"{k}: '{v}' is not a number", where="--set") from None
        out[k] = raw
    return out


def make_config(path: str | os.PathLike[str] | None = None, overrides: dict[str, object] | None
                = None) -> XbarConfig:
    """Defaults <- TOML file <- overrides; unknown keys and bad values exit 2."""
    values: dict[str, object] = {}
    where = os.fspath(path) if path else "config"
    if path is not None:
        p = os.fspath(path)
        if not os.path.isfile(p):
            raise BadInputError("no such file", where=p)
        try:
            with open(p, "rb") as f:
                data = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise BadInputError(f"invalid TOML: {e}", where=p) from None
        for k, v in data.items():
            if k not in _FIELDS:
                raise BadInputError(f"unknown key '{k}'", where=p)
            values[k] = _coerce(k, v, p)
    for k, v in (overrides or {}).items():
        if k not in _FIELDS:
            raise BadInputError(f"unknown key '{k}'", where="--set")
        values[k] = _coerce(k, v, "--set")
    return XbarConfig(**values).validate(where)  # type: ignore[arg-type]


# The config key that switches each non-ideal read effect on (for refusals).
PHYSICS_KEYS = (("sigma_read_ua", "cycle-to-cycle read noise"), ("wire_ohm", "IR drop"),
                ("disturb_onset_reads", "read disturb"))


def physics_refusal(phys: ReadPhysics, what: str) -> str | None:
    """Why ``what`` (the RTL, a vector set) cannot take this chip, or None: the RTL's
    behavioral crossbar reads ideal integer currents only."""
    on = [(k, name) for (k, name), flag in zip(
        PHYSICS_KEYS, (phys.sigma_units > 0, phys.wire_g_units > 0, phys.disturb), strict=True)
        if flag]
    if not on:
        return None
    keys = ", ".join(f"{name} ({k})" for k, name in on)
    return (f"{what} has no {keys}: the RTL crossbar reads ideal integer currents; set "
            + " = 0, ".join(k for k, _ in on) + " = 0, or compare with the golden machine "
            "(cimgen verify without --rtl checks it against the independent non-ideal reference)")
