"""A cpio "newc" archive writer: the format the Linux kernel unpacks as initramfs.

Written here because it is ~50 lines and no maintained library does just this.
Entries are written in the order given; directories must precede their files.
"""

from __future__ import annotations

import stat
from typing import BinaryIO

_TRAILER = "TRAILER!!!"


class CpioWriter:
    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self._inode = 1
        self._written = 0

    def _pad(self) -> None:
        remainder = self._written % 4
        if remainder:
            self._write(b"\0" * (4 - remainder))

    def _write(self, data: bytes) -> None:
        self._stream.write(data)
        self._written += len(data)

    def _entry(self, name: str, mode: int, data: bytes = b"", nlink: int = 1,
               mtime: int = 0, rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.lstrip("/").encode() or b"."
        fields = [self._inode, mode, 0, 0, nlink, mtime, len(data), 0, 0,
                  rdev[0], rdev[1], len(encoded) + 1, 0]
        self._inode += 1
        header = b"070701" + b"".join(b"%08X" % value for value in fields)
        self._write(header + encoded + b"\0")
        self._pad()
        self._write(data)
        self._pad()

    def directory(self, name: str, mode: int = 0o755) -> None:
        self._entry(name, stat.S_IFDIR | mode, nlink=2)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | (mode & 0o7777), data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def close(self) -> None:
        self._entry(_TRAILER, 0)
