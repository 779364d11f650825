from django.shortcuts import render
from django.utils.cache import patch_vary_headers


def render_page(request, template: str, context: dict, *, fragment: str, status: int = 200):
    """One view serves the page and, to an htmx request (not boosted navigation), only its `fragment`
    (a django-template-partials partial). Vary: HX-Request so caches and the back button keep them apart; a
    history restore (back to a page htmx no longer caches) asks for the whole page."""
    partial = request.htmx and not request.htmx.boosted and not request.htmx.history_restore_request
    name = f"{template}#{fragment}" if partial else template
    response = render(request, name, context, status=status)
    patch_vary_headers(response, ["HX-Request"])
    return response
