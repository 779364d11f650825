"""File sources: a CSV or JSON Lines file uploaded for a dataset, checked row by row before any of it is kept.

The uploaded rows live in the dataset's DatasetRecord rows (apps.connectors.datasets.dataset_upload
replaces them all at once), so reading a subject here reads those rows.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field

from .base import Client, FieldInfo
from .errors import ConnectorError

MAX_BYTES = 20 * 1024 * 1024
MAX_ROWS = 200_000
DELIMITERS = ",;\t|"


@dataclass
class ParsedFile:
    """The rows of an uploaded file: (row number, record) pairs, and the errors of rows that failed.
    Row numbers are line numbers in the file (a CSV's header is line 1), as an editor shows them."""

    rows: list[tuple[int, dict]] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)

    def error(self, row: int, field_name: str, message: str) -> None:
        self.errors.append({"row": row, "field": field_name, "message": message})


class FileClient(Client):
    system = "The uploaded file"

    @property
    def format(self) -> str:
        return self.config.get("format", "csv")

    def _records(self):
        from ..models import DatasetRecord

        return DatasetRecord.objects.filter(dataset__connector=self.connector)

    # the source side: what was uploaded

    def test(self) -> str:
        datasets = self.connector.datasets.count()
        records = self._records().count()
        return (
            f"{self.format.upper()} file source: {datasets} dataset{'s' if datasets != 1 else ''}, "
            f"{records} uploaded record{'s' if records != 1 else ''}"
        )

    def list_objects(self) -> list[str]:
        return sorted(set(self.connector.datasets.values_list("table", flat=True)))

    def list_fields(self, obj: str) -> list[FieldInfo]:
        first = self._records().filter(dataset__table=obj).order_by("pk").first()
        if first is None:
            raise ConnectorError(f"Nothing was uploaded for {obj!r} yet", permanent=True)
        return [FieldInfo(name) for name in first.data]

    def read_by_key(self, obj: str, key_field: str, key: str, *, limit: int = 50) -> list[dict]:
        records = self._records().filter(dataset__table=obj).order_by("pk")
        by_key = records.filter(dataset__key_field=key_field, key=str(key))
        if not by_key.exists():  # another field than the dataset's key: look inside the records
            by_key = records.filter(**{f"data__{key_field}": key})
        return [record.data for record in by_key[:limit]]

    # parsing an upload

    def parse(self, uploaded_file, *, dataset) -> ParsedFile:
        """Every row of the file checked against `dataset`: its key present, its quality rules met. A
        problem with the whole file (too big, not UTF-8, no header, too many rows) is a ConnectorError."""
        size = getattr(uploaded_file, "size", None)
        if size is not None and size > MAX_BYTES:
            raise ConnectorError(f"The file is {size / 1048576:.1f} MB; the limit is {MAX_BYTES // 1048576} MB")
        raw = uploaded_file.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise ConnectorError(f"The file is larger than {MAX_BYTES // 1048576} MB")
        try:
            text = raw.decode("utf-8-sig")  # Excel writes a byte-order mark
        except UnicodeDecodeError as exc:
            raise ConnectorError(
                f"The file is not UTF-8 text (byte {exc.start + 1} cannot be read); save it as UTF-8 and upload again"
            ) from None
        parsed = ParsedFile()
        rows = self._csv(text, parsed) if self.format == "csv" else self._jsonl(text, parsed)
        for number, record in rows:
            if len(parsed.rows) >= MAX_ROWS:
                raise ConnectorError(f"The file has more than {MAX_ROWS:,} rows; split it or use a database source")
            if self._check(number, record, dataset, parsed):
                parsed.rows.append((number, record))
        if not parsed.rows and not parsed.errors:
            raise ConnectorError("The file has no rows")
        return parsed

    def _csv(self, text: str, parsed: ParsedFile):
        try:
            dialect = csv.Sniffer().sniff(text[:8192], delimiters=DELIMITERS)
        except csv.Error:  # one column, or nothing to tell from: the comma it is
            dialect = csv.excel
        reader = csv.reader(io.StringIO(text, newline=""), dialect)
        try:
            header = [name.strip() for name in next(reader)]
        except StopIteration:
            raise ConnectorError("The file is empty") from None
        except csv.Error as exc:
            raise ConnectorError(f"The header line cannot be read: {exc}") from None
        if not any(header):
            raise ConnectorError("The first line must name the columns")
        blank = [str(i + 1) for i, name in enumerate(header) if not name]
        if blank:
            raise ConnectorError(f"Column(s) {', '.join(blank)} of the header have no name")
        duplicates = sorted({name for name in header if header.count(name) > 1})
        if duplicates:
            raise ConnectorError(f"The header names {', '.join(duplicates)} more than once")
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                parsed.error(reader.line_num, "", f"Cannot read the line: {exc}")
                continue
            if not values or not any(value.strip() for value in values):
                continue  # blank line
            if len(values) != len(header):
                parsed.error(reader.line_num, "", f"{len(values)} values for {len(header)} columns")
                continue
            # An empty cell is a missing value, as a spreadsheet means it.
            yield (
                reader.line_num,
                {name: (value if value.strip() else None) for name, value in zip(header, values, strict=True)},
            )

    def _jsonl(self, text: str, parsed: ParsedFile):
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                parsed.error(number, "", f"Not valid JSON: {exc.msg} (column {exc.colno})")
                continue
            if not isinstance(record, dict):
                parsed.error(number, "", f"Expected a JSON object, got {type(record).__name__}")
                continue
            yield number, record

    @staticmethod
    def _check(number: int, record: dict, dataset, parsed: ParsedFile) -> bool:
        from ..datasets import MAX_KEY_LENGTH, record_quality_errors

        ok = True
        key = record.get(dataset.key_field)
        if key is None or str(key).strip() == "":
            parsed.error(number, dataset.key_field, f"The key field {dataset.key_field} is empty or missing")
            ok = False
        elif len(str(key)) > MAX_KEY_LENGTH:
            parsed.error(number, dataset.key_field, f"The key is longer than {MAX_KEY_LENGTH} characters")
            ok = False
        for field_name, message in record_quality_errors(dataset.quality_rules, record):
            parsed.error(number, field_name, message)
            ok = False
        return ok
