"""The two signed values the widget uses, each with its own salt so neither passes for the other.

- the link token: the nonce of an issued WidgetToken, timestamped; it is the widget's only credential.
- the form token: binds a rendered form to its link and to the output it showed.
"""

from django.core import signing

LINK_SALT = "doorstep.widget"
FORM_SALT = "doorstep.widget.form"
MAX_TTL_SECONDS = 60 * 60


def link_sign(nonce: str) -> str:
    return signing.TimestampSigner(salt=LINK_SALT).sign(nonce)


def link_unsign(token: str) -> str:
    """The nonce; raises signing.SignatureExpired past the longest TTL (a backstop on the signer's own
    clock: the issued row holds the real expiry) and signing.BadSignature when forged or altered."""
    return signing.TimestampSigner(salt=LINK_SALT).unsign(token, max_age=MAX_TTL_SECONDS)


def form_token_make(*, widget_token_id: int, recommendation_id: int) -> str:
    return signing.dumps({"t": widget_token_id, "r": recommendation_id}, salt=FORM_SALT)


def form_token_read(form_token: str, *, widget_token_id: int) -> int | None:
    """The output a form token was rendered for, or None when it is forged or from another link."""
    try:
        data = signing.loads(form_token, salt=FORM_SALT)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or data.get("t") != widget_token_id or type(data.get("r")) is not int:
        return None
    return data["r"]
