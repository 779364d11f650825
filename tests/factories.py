import factory
from django.contrib.auth import get_user_model


class UserFactory(factory.django.DjangoModelFactory):
    """A user with no group and no grant unless a test gives them."""

    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = factory.django.Password("demo-pass-123!")


def key_client(user, name: str | None = None, **key_options):
    """An API client authenticated by a new API key of `user` (options: scopes, expires_at)."""
    import uuid

    from rest_framework.test import APIClient

    from apps.core.actors import Actor
    from apps.permissions.services import api_key_create

    _, raw = api_key_create(
        actor=Actor(user=user), user=user, name=name or f"key {uuid.uuid4().hex[:8]}", **key_options
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client
