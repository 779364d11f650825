"""URL converters."""


class IdConverter:
    """A database id: at most 18 digits, so a guessed id out of the 64-bit range is a 404, never a database
    error (`<int:…>` accepts any number of digits)."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value) -> str:
        return str(int(value))
