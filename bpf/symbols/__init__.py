"""Go-aware symbolization for the node agent (standard library only).

``open_binary(path)`` parses one ELF (``.symtab``, ``.gopclntab``, Go version);
``ProcessSymbolizer(pid)`` maps a live process's addresses to function names,
expanding inlined calls, with ``0x<addr> [<module>]`` for what cannot be
resolved.
"""

from .binary import Binary, Frame, open_binary
from .elf import ElfError, ElfFile
from .gopclntab import Pclntab, PclntabError
from .process import ProcessSymbolizer, read_maps, unresolved_label

__all__ = [
    "Binary",
    "ElfError",
    "ElfFile",
    "Frame",
    "Pclntab",
    "PclntabError",
    "ProcessSymbolizer",
    "open_binary",
    "read_maps",
    "unresolved_label",
]
