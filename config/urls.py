from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.accounts import views as accounts_views
from apps.core import views as core_views
from apps.core.api import json_error_view

api_v1 = [
    path("", include("apps.workflows.api.urls")),
    path("", include("apps.reviews.api.urls")),
    path("", include("apps.delivery.api.urls")),
    path("", include("apps.widget.api.urls")),
    path("", include("apps.policies.api.urls")),
    path("", include("apps.reporting.api.urls")),
]

urlpatterns = [
    path("", core_views.home, name="home"),
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    path("metrics", core_views.metrics, name="metrics"),
    path("accounts/login/", accounts_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/", include("apps.accounts.urls")),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("reviews/", include("apps.reviews.urls")),
    path("use-cases/", include("apps.workflows.urls")),
    path("policies/", include("apps.policies.urls")),
    path("connectors/", include("apps.connectors.urls")),
    path("alerts/", include("apps.monitoring.urls")),
    path("monitoring/", include("apps.monitoring.monitor_urls")),
    path("roi/", include("apps.reporting.urls")),
    path("audit/", include("apps.audit.urls")),
    path("deliveries/", include("apps.delivery.urls")),
    path("widget/", include("apps.widget.urls")),
    path("governance/", include("apps.governance.urls")),
    # The admin's own login form would skip the second factor and the SSO button: send it to ours.
    path("admin/login/", RedirectView.as_view(pattern_name="login", query_string=True), name="admin-login"),
    path("admin/", admin.site.urls),
]

handler400 = "config.urls.bad_request"
handler404 = "config.urls.not_found"
handler500 = "config.urls.server_error"


def _json_or_html(status_code, code, message, html_handler):
    api = json_error_view(status_code, code, message)

    def view(request, *args, **kwargs):
        if request.path.startswith("/api/"):
            return api(request)
        return html_handler(request, *args, **kwargs)

    return view


from django.views import defaults  # noqa: E402

bad_request = _json_or_html(400, "bad_request", "Bad request.", defaults.bad_request)
not_found = _json_or_html(404, "not_found", "Not found.", defaults.page_not_found)
server_error = _json_or_html(500, "server_error", "Server error.", defaults.server_error)
