"""What a compiled program tells an independent executor: where every weight tile
sits, when it is written and what every READ of the inference program reads.

The compiler fills a ``Schedule`` while it places tiles and emits READs
(``cimgen.compiler.Compiled.schedule``); ``golden_model.nonideal_reference``
recomputes every layer from it, the IR, the device map and the ADC tables,
without the instruction stream. Nothing here says *how* a tile is encoded or
read (the reference derives that from the mapping itself); it says only where
and in which order, which is what the noise keys and the read-disturb counts
depend on.

The inference program of one run is, body by body: the residency's row
writes (streamed chips only: the rows whose cells change), then the body's
READs once per input slot s = 0 .. batch - 1 (a LOOP when batch > 1). So READ
``k`` of body ``b`` for slot ``s`` is READ number
``sum(batch * len(bodies[j].reads) for j < b) + s * len(bodies[b].reads) + k``
of the run: the READ counter that keys its read noise (``READ`` in the
(seed, run, READ, row, column) key), the same count the golden machine keeps.
Input ``n`` of a batch of inputs runs in program run ``n // batch``, slot
``n % batch``.
"""

from __future__ import annotations

from dataclasses import dataclass

SIGNED_PLANE = -1  # ReadStep.plane of a read on +-1 / ternary inputs (no bit-planes)


@dataclass(frozen=True)
class TilePlacement:
    """One logical weight tile: inputs [f0, f0 + f_len) x outputs [o0, o0 + o_len) of
    a linear layer (layer -1: the shared basis of basis mode, its outputs the basis
    vectors), its F axis in data-memory order (a convolution's (ky, kx, c), a dense
    layer's inputs in the memory order of the tensor it reads), placed with its
    first cell at (row0, col0) of crossbar ``xbar``; ``phase`` is -1 for a tile
    written once by the setup program, else the residency that streams it."""

    layer: int
    f0: int
    f_len: int
    o0: int
    o_len: int
    phase: int
    xbar: int
    row0: int
    col0: int


@dataclass(frozen=True)
class ReadStep:
    """One READ: tile ``tile``, output position ``position`` (row-major over the
    output height x width, 0 for dense layers), read ``read`` of the mapping's
    recipe, input bit-plane ``plane`` (the bit index; SIGNED_PLANE without planes),
    for linear layer ``layer``; in basis mode ``segment`` is the input segment
    read against the basis tile."""

    tile: int  # index into Schedule.tiles
    position: int
    read: int
    plane: int
    layer: int
    segment: int = 0


@dataclass(frozen=True)
class Body:
    """The READs of one loop body (one input slot), in program order, and the
    residency written before it (-1: nothing streams)."""

    residency: int
    reads: tuple[ReadStep, ...]


@dataclass(frozen=True)
class Schedule:
    mapping: str
    tiles: tuple[TilePlacement, ...]
    bodies: tuple[Body, ...]
    batch: int = 1  # inputs per program run (slots)
    streams: bool = False  # residencies rewrite crossbar rows during a run

    @property
    def reads(self) -> int:
        """READs of one program run."""
        return self.batch * sum(len(b.reads) for b in self.bodies)
