"""Who acts: a user, an API key (acting for its user) or a system task. Services take one of these."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    user: object | None = None
    api_key: object | None = None
    system: str = ""

    @property
    def label(self) -> str:
        if self.api_key is not None:
            return f"api-key:{self.api_key.name} ({self.user.get_username()})"
        if self.user is not None and self.system:
            return f"system:{self.system} ({self.user.get_username()})"
        if self.user is not None:
            return self.user.get_username()
        return f"system:{self.system or 'task'}"

    @property
    def history_user(self):
        """The user simple-history records for changes made by this actor."""
        return self.user

    @classmethod
    def from_request(cls, request) -> "Actor":
        api_key = getattr(request, "auth", None)
        return cls(user=request.user, api_key=api_key if hasattr(api_key, "key_digest") else None)

    @classmethod
    def for_system(cls, name: str, *, on_behalf_of=None) -> "Actor":
        return cls(user=on_behalf_of, system=name)
