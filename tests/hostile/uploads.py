"""Helpers for hostile uploads: a multipart body produced lazily (never held in memory), and
XLSX files with parts of our choosing."""

from __future__ import annotations

import io
import zipfile

import openpyxl

FILLER = b"x" * 65536


class LazyMultipart(io.RawIOBase):
    """A multipart/form-data body of ``size`` filler bytes in the ``file`` field, generated as
    it is read; ``read_bytes`` counts what the server has taken so far."""

    def __init__(self, *, fields: dict[str, str], file_name: str, size: int, boundary: str = "hostile-boundary-7e1") -> None:
        self.boundary = boundary
        head = "".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in fields.items()
        )
        head += f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file_name}"\r\nContent-Type: text/csv\r\n\r\n'
        self._parts = [head.encode(), size, f"\r\n--{boundary}--\r\n".encode()]
        self.length = len(self._parts[0]) + size + len(self._parts[2])
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        wanted, written, offset = len(buffer), 0, self.read_bytes
        for part in self._parts:
            length = part if isinstance(part, int) else len(part)
            if offset >= length:
                offset -= length
                continue
            take = min(length - offset, wanted - written)
            if isinstance(part, int):
                done = 0
                while done < take:
                    step = min(len(FILLER), take - done)
                    buffer[written + done:written + done + step] = FILLER[:step]
                    done += step
            else:
                buffer[written:written + take] = part[offset:offset + take]
            written += take
            offset = 0
            if written == wanted:
                break
        self.read_bytes += written
        return written

    def environ(self, path: str, host: str) -> dict:
        """What the test client needs to send this body to ``path`` as a WSGI server would."""
        return {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": path,
            "HTTP_HOST": host,
            "CONTENT_TYPE": f"multipart/form-data; boundary={self.boundary}",
            "CONTENT_LENGTH": str(self.length),
            "wsgi.input": self,
        }


SHARED_STRINGS_REL = (
    b'<Relationship Id="rIdHostileSS" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
    b'sharedStrings" Target="sharedStrings.xml"/></Relationships>'
)
SHARED_STRINGS_TYPE = (
    b'<Override PartName="/xl/sharedStrings.xml" '
    b'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>'
)


def workbook_bytes(rows: list[list[object]]) -> bytes:
    workbook = openpyxl.Workbook()
    for row in rows:
        workbook.active.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def xlsx_with_part(name: str, chunks, *, rows: list[list[object]] | None = None) -> bytes:
    """A real workbook (``rows``) whose part ``name`` is replaced by the bytes of ``chunks``
    (streamed into the zip, so a part of hundreds of MB costs no memory); a shared-strings part
    is wired into the workbook's relationships, so openpyxl would load it."""
    source = zipfile.ZipFile(io.BytesIO(workbook_bytes(rows or [["身份证号", "姓名"]])))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if info.filename == name:
                continue
            data = source.read(info.filename)
            if name == "xl/sharedStrings.xml" and info.filename == "xl/_rels/workbook.xml.rels":
                data = data.replace(b"</Relationships>", SHARED_STRINGS_REL)
            if name == "xl/sharedStrings.xml" and info.filename == "[Content_Types].xml":
                data = data.replace(b"</Types>", SHARED_STRINGS_TYPE)
            target.writestr(info.filename, data)
        with target.open(name, "w", force_zip64=True) as part:
            for chunk in chunks:
                part.write(chunk)
    return out.getvalue()
