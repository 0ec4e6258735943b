"""What a compiled program tells an independent executor: where every weight tile
sits and what every READ of the inference program reads.

The compiler fills a ``Schedule`` while it places tiles and emits READs
(``cimgen.compiler.Compiled.schedule``); ``golden_model.nonideal_reference``
recomputes every layer from it, the IR, the device map and the ADC tables,
without the instruction stream. Nothing here says *how* a tile is encoded or
read (the reference derives that from the mapping itself); it says only where
and in which order, which is what the noise keys and the read-disturb counts
depend on.
"""

from __future__ import annotations

from dataclasses import dataclass

SIGNED_PLANE = -1  # ReadStep.plane of a read on signed (not bit-plane) inputs


@dataclass(frozen=True)
class TilePlacement:
    """One logical weight tile: inputs [f0, f0 + f_len) x outputs [o0, o0 + o_len) of
    a linear layer, its F axis in data-memory order (a convolution's (ky, kx, c), a
    dense layer's inputs in HWC order of the tensor it flattens), placed with its
    first cell at (row0, col0) of crossbar ``xbar`` in residency ``phase``."""

    layer: int  # index in Network.layers
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
    """One READ of the inference program: tile ``tile``, output position
    ``position`` (row-major over the output height x width, 0 for dense layers),
    read ``read`` of the mapping's recipe, input bit-plane ``plane``."""

    tile: int  # index into Schedule.tiles
    position: int
    read: int
    plane: int  # SIGNED_PLANE for signed inputs


@dataclass(frozen=True)
class PhaseStart:
    """The inference program (re)writes every row of residency ``phase`` here."""

    phase: int


@dataclass(frozen=True)
class Schedule:
    mapping: str
    tiles: tuple[TilePlacement, ...]
    # The inference program's READs and phase writes in program order; READ c
    # of a run is the c-th ReadStep (the key of its read noise).
    events: tuple[ReadStep | PhaseStart, ...]
    # Residencies written by the setup program (before any inference run).
    setup_phases: tuple[int, ...] = (0,)

    @property
    def reads(self) -> int:
        return sum(1 for e in self.events if isinstance(e, ReadStep))
