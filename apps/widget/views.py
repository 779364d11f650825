"""The widget (framed inside other web apps, authenticated by its signed link) and the Embed panel of
a use case, where an integrator issues links and an editor names the web apps that may frame them."""

from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.utils.cache import add_never_cache_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from apps.core.actors import Actor
from apps.core.exceptions import NotFound, PermissionDenied, ServiceError
from apps.core.htmx import render_page
from apps.core.permissions import has_object_permission
from apps.workflows.selectors import use_case_by_slug

from . import selectors, services
from .forms import EmbedOriginsForm, WidgetFeedbackForm, WidgetLinkForm
from .origins import origins_valid
from .tokens import form_token_make, form_token_read

WIDGET = "widget/widget.html"
PANEL = "widget/embed_panel.html"


def _refused(request, message: str, *, status: int, origins: list[str]):
    """Nothing shown, nothing recorded. To a button press (htmx) the message replaces the widget with a
    200, since htmx does not swap an error answer and the person would see nothing happen."""
    if request.htmx:
        status = 200
    response = render_page(request, "widget/refused.html", {"message": message}, fragment="widget-body", status=status)
    response.csp_frame_ancestors = origins
    return response


# Why csrf_exempt: the widget lives in a third-party iframe, where our session and CSRF cookies are not
# sent (SameSite), and it needs no session: the only credential is the signed link in the URL, which a
# forging site cannot know, plus a form token bound to that link and to the output shown. No cookie is
# read, so there is no ambient authority for a cross-site request to borrow.
@csrf_exempt
@xframe_options_exempt
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def widget_show(request, token: str):
    """The latest passed output for the link's subject, with Accept / Edit / Reject. Framed only by
    the use case's embed origins (CSP frame-ancestors); a bad, expired or withdrawn link gets a 403."""
    try:
        widget_token = selectors.widget_token_resolve(token=token)
    except selectors.WidgetLinkInvalid as exc:
        known = exc.widget_token
        origins = selectors.widget_frame_origins(widget_token=known) if known else []
        return _refused(request, exc.message, status=403, origins=origins)
    origins = selectors.widget_frame_origins(widget_token=widget_token)
    form, recommendation = None, None
    if request.method == "POST":
        recommendation_id = form_token_read(request.POST.get("form_token", ""), widget_token_id=widget_token.pk)
        if recommendation_id is None:
            return _refused(request, "This form does not belong to this link.", status=403, origins=origins)
        form = WidgetFeedbackForm(request.POST)
        if form.is_valid():
            try:
                services.widget_feedback_record(
                    widget_token=widget_token,
                    recommendation_id=recommendation_id,
                    type=form.event_type,
                    text=form.cleaned_data["text"],
                    reason=form.cleaned_data["reason"],
                )
            except NotFound as exc:
                return _refused(request, exc.message, status=404, origins=origins)
            except PermissionDenied as exc:
                return _refused(request, exc.message, status=403, origins=origins)
            except ServiceError as exc:
                # Only text and reason are shown beside their input; the rest is said above the buttons.
                form.add_error(exc.field if exc.field in ("text", "reason") else None, exc.message)
            else:
                if form.cleaned_data["action"] == "shown":
                    return HttpResponse(status=204)
                if not request.htmx:
                    return redirect(request.path)
                form = None
        recommendation = selectors.widget_recommendation(widget_token=widget_token, pk=recommendation_id)
    else:
        recommendation = selectors.widget_recommendation_latest(widget_token=widget_token)
    context = {
        "widget_token": widget_token,
        "use_case": widget_token.use_case,
        "recommendation": recommendation,
        "given": recommendation
        and selectors.widget_feedback_given(widget_token=widget_token, recommendation=recommendation),
        "form_token": recommendation
        and form_token_make(widget_token_id=widget_token.pk, recommendation_id=recommendation.pk),
        "form": form,
        "open": form.data.get("action") if form is not None and form.errors else "",
        "record_shown": request.method != "POST",
        "origins": " ".join(origins),
        "action_url": request.path,
    }
    response = render_page(request, WIDGET, fragment="widget-body", context=context)
    response.csp_frame_ancestors = origins
    return response


def _panel_use_case(request, slug: str):
    use_case = use_case_by_slug(user=request.user, slug=slug)
    if use_case is None:
        raise Http404("No such use case")
    return use_case


def _panel(request, use_case, *, link_form=None, origins_form=None, link=None):
    can_issue = has_object_permission(request.user, "run_usecase", use_case)
    can_configure = has_object_permission(request.user, "change_usecase", use_case)
    if not (can_issue or can_configure):
        if request.htmx and request.method == "GET":
            return HttpResponse(status=204)  # the use case page loads the panel for everyone: nothing to add
        raise DjangoPermissionDenied("You may not embed this use case.")
    origins = origins_valid(use_case.embed_origins)
    context = {
        "use_case": use_case,
        "can_issue": can_issue,
        "can_configure": can_configure,
        "origins": origins,
        "link_form": link_form or WidgetLinkForm(),
        "origins_form": origins_form or EmbedOriginsForm(initial={"embed_origins": "\n".join(origins)}),
        "link": link,
    }
    response = render_page(request, PANEL, fragment="embed-panel", context=context)
    add_never_cache_headers(response)  # a link is a credential: never from a cache
    return response


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def embed_panel(request, slug: str):
    """GET: the Embed panel (users with run_usecase or change_usecase on the use case). POST: issue a
    link for one subject (widget.services.widget_token_issue checks run_usecase)."""
    use_case = _panel_use_case(request, slug)
    if request.method != "POST":
        return _panel(request, use_case)
    form = WidgetLinkForm(request.POST)
    link = None
    if form.is_valid():
        try:
            link = services.widget_token_issue(
                actor=Actor.from_request(request),
                use_case=use_case,
                subject_key=form.cleaned_data["subject"],
                ttl=timedelta(minutes=form.cleaned_data["ttl_minutes"]),
            )
        except PermissionDenied:
            raise DjangoPermissionDenied("You may not issue widget links for this use case.") from None
        except ServiceError as exc:
            name = {"ttl": "ttl_minutes"}.get(exc.field, exc.field)
            form.add_error(name if name in form.fields else None, exc.message)
        else:
            form = None
    return _panel(request, use_case, link_form=form, link=link)


@login_required
@require_POST
def embed_origins(request, slug: str):
    """Set the web apps that may frame the widget (widget.services.use_case_embed_origins_set checks
    change_usecase)."""
    use_case = _panel_use_case(request, slug)
    form = EmbedOriginsForm(request.POST)
    if form.is_valid():
        try:
            use_case = services.use_case_embed_origins_set(
                actor=Actor.from_request(request), use_case=use_case, origins=form.cleaned_data["embed_origins"]
            )
        except PermissionDenied:
            raise DjangoPermissionDenied("You may not change this use case.") from None
        except ServiceError as exc:
            form.add_error("embed_origins", exc.message)
        else:
            form = None
    return _panel(request, use_case, origins_form=form)
