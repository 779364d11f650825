"""What each connector kind needs: its non-secret settings (Connector.config) and its credentials
(Connector.secrets, encrypted, never shown again). The forms are built from this and the clients read
exactly these names, so adding a setting means adding it here."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    name: str
    label: str
    help: str = ""
    required: bool = True
    choices: tuple[str, ...] = ()  # when set, one of these values
    kind: str = "text"  # text, url, int, decimal, bool, list (comma separated), json, path


SQL_URL_HELP = (
    "An SQLAlchemy URL: postgresql://user:password@host:5432/db, mysql+pymysql://user:password@host:3306/db "
    "or sqlite:////absolute/path.db"
)

KINDS: dict[str, dict[str, tuple[Setting, ...]]] = {
    "sql": {
        "config": (),
        "secrets": (Setting("url", "Database URL", SQL_URL_HELP),),
    },
    "salesforce": {
        "config": (
            Setting("instance_url", "Instance URL", "https://yourcompany.my.salesforce.com", kind="url"),
            Setting("api_version", "API version", "e.g. 59.0", required=False),
            Setting("ca_bundle", "CA bundle", "PEM file of a private CA, if the instance uses one", False, kind="path"),
        ),
        "secrets": (
            Setting("client_id", "Consumer key", "Of a connected app with the client credentials flow"),
            Setting("client_secret", "Consumer secret"),
        ),
    },
    "hubspot": {
        "config": (Setting("base_url", "API base URL", "https://api.hubapi.com", required=False, kind="url"),),
        "secrets": (Setting("access_token", "Private app access token"),),
    },
    "zendesk": {
        "config": (Setting("base_url", "Zendesk URL", "https://yourcompany.zendesk.com", kind="url"),),
        "secrets": (
            Setting("email", "Agent e-mail", "The agent the API token belongs to"),
            Setting("api_token", "API token"),
        ),
    },
    "rest": {
        "config": (
            Setting("base_url", "Base URL", kind="url"),
            Setting("auth_type", "Authentication", choices=("none", "bearer", "basic", "header")),
            Setting("auth_header", "Key header name", "For header-key authentication, e.g. X-Api-Key", False),
            Setting("read_path", "Read path", "Path for one subject, e.g. /customers/{key}", False),
            Setting("list_path", "List path", "Path listing records, e.g. /customers?updated_since={cursor}", False),
            Setting("records_path", "Records JSON path", "Where the records are in a list answer, e.g. $.data", False),
            Setting("field_map", "Field mapping", '{"our_field": "$.their.json.path"}', False, kind="json"),
            Setting("write_path", "Write path", "e.g. /customers/{key}/notes", False),
            Setting("write_method", "Write method", choices=("POST", "PUT", "PATCH"), required=False),
            Setting("write_id_path", "Created id JSON path", "e.g. $.id", False),
        ),
        "secrets": (
            Setting("token", "Bearer token", required=False),
            Setting("username", "User name", required=False),
            Setting("password", "Password", required=False),
            Setting("api_key", "API key", required=False),
        ),
    },
    "file": {
        "config": (Setting("format", "Format", choices=("csv", "jsonl")),),
        "secrets": (),
    },
    "model_openai": {
        "config": (
            Setting("base_url", "Base URL", "e.g. https://api.openai.com/v1 or http://localhost:11434/v1", kind="url"),
            Setting("model", "Model", "e.g. gpt-4o-mini, llama3.1"),
            Setting("api_style", "API style", choices=("openai", "azure"), required=False),
            Setting("api_version", "API version (Azure)", "e.g. 2024-06-01", required=False),
            Setting("logprobs", "Ask for logprobs", "Confidence from token log-probabilities", False, kind="bool"),
            Setting("system_prompt", "System prompt", required=False),
            Setting("prompt_template", "Prompt template", "Python format string over the record's fields", False),
            Setting("temperature", "Temperature", required=False, kind="decimal"),
            Setting("max_tokens", "Max tokens", required=False, kind="int"),
            Setting("price_per_1k_input_tokens", "Price per 1k input tokens", required=False, kind="decimal"),
            Setting("price_per_1k_output_tokens", "Price per 1k output tokens", required=False, kind="decimal"),
        ),
        "secrets": (Setting("api_key", "API key", required=False),),
    },
    "model_http": {
        "config": (
            Setting("url", "Endpoint URL", kind="url"),
            Setting("output_path", "Text JSON path", "e.g. $.prediction.text"),
            Setting("confidence_path", "Confidence JSON path", required=False),
            Setting("cost_per_call", "Cost per call", required=False, kind="decimal"),
        ),
        "secrets": (Setting("token", "Bearer token", required=False),),
    },
    "model_sklearn": {
        "config": (
            Setting("artifact", "Model file", "A joblib file written by Doorstep's trainer", kind="path"),
            Setting("cost_per_call", "Cost per call", required=False, kind="decimal"),
        ),
        "secrets": (),
    },
    "model_retrieval": {
        "config": (
            Setting("artifact", "Index file", "A joblib file written by Doorstep's indexer", kind="path"),
            Setting("price_per_1k_tokens", "Price per 1k tokens", required=False, kind="decimal"),
        ),
        "secrets": (),
    },
    "webhook": {
        "config": (Setting("url", "Receiver URL", kind="url"),),
        "secrets": (Setting("signing_secret", "Signing secret", "Shared with the receiver to verify signatures"),),
    },
    "email": {
        "config": (
            Setting("host", "SMTP host"),
            Setting("port", "SMTP port", kind="int"),
            Setting("use_tls", "STARTTLS", required=False, kind="bool"),
            Setting("from_address", "From"),
            Setting("to", "To", "Comma-separated addresses", kind="list"),
        ),
        "secrets": (
            Setting("username", "SMTP user", required=False),
            Setting("password", "SMTP password", required=False),
        ),
    },
    "slack": {
        "config": (),
        "secrets": (Setting("webhook_url", "Incoming webhook URL", "The URL is the credential: it is kept secret"),),
    },
}
