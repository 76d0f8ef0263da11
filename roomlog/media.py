"""Uploaded files (repair photos) on the local filesystem, under ``media_dir``.

One directory per room, one file per upload. An upload's id is 128 random bits
plus its extension, so ids cannot be guessed and a file is found only under
the room it was uploaded to. Limits: ``max_upload_bytes`` and the image types
in :data:`TYPES`, recognised by their whole structure (``roomlog.images``: a
PNG with a page appended is no PNG), not by the declared type or a name. File
I/O runs in a worker thread: the event loop never waits on disk.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
from pathlib import Path

from roomlog.errors import ErrorCode, RoomlogError
from roomlog.images import image_type

__all__ = ["TYPES", "MediaStore"]

# content type -> extension
TYPES: dict[str, str] = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}
_BY_EXTENSION = {ext: kind for kind, ext in TYPES.items()}
_ID = re.compile(r"[0-9a-f]{32}\.(jpg|png|webp)")


class MediaStore:
    def __init__(self, directory: str, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes

    def _folder(self, room: str) -> Path:
        kind, _, room_id = room.partition(":")  # room ids never hold "/" (parse_room)
        return self.directory / kind / room_id

    async def save(self, room: str, content_type: str, body: bytes) -> str:
        """Store ``body`` for ``room``; its upload id. PAYLOAD_TOO_LARGE or
        INVALID_ARGS (not an accepted image) otherwise."""
        if len(body) > self.max_bytes:
            raise RoomlogError(ErrorCode.PAYLOAD_TOO_LARGE,
                                f"uploads are limited to {self.max_bytes} bytes")
        kind, why = image_type(body)
        declared = content_type.split(";")[0].strip().lower()
        if kind is None or declared != kind:
            raise RoomlogError(ErrorCode.INVALID_ARGS,
                                f"send a JPEG, PNG or WebP image with its Content-Type "
                                f"({', '.join(TYPES)}); got {declared or 'none'}"
                                + (f" ({why})" if why else ""))
        upload_id = f"{secrets.token_hex(16)}.{TYPES[kind]}"
        await asyncio.to_thread(self._write, self._folder(room), upload_id, body)
        return upload_id

    @staticmethod
    def _write(folder: Path, name: str, body: bytes) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{name}.part"
        partial.write_bytes(body)
        os.replace(partial, folder / name)  # readers never see half a file

    async def find(self, room: str, upload_id: str) -> tuple[Path, str] | None:
        """The file of an upload of ``room`` and its content type, or None."""
        match = _ID.fullmatch(upload_id)
        if match is None:
            return None
        path = self._folder(room) / upload_id
        if not await asyncio.to_thread(path.is_file):
            return None
        return path, _BY_EXTENSION[match[1]]
