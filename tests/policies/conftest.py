import pytest


@pytest.fixture
def replayed():
    """Replay a version's current rules through apps.policies.replay (request, then run the job in-process);
    approving a change to a policy with an active version needs one."""
    from apps.core.actors import Actor
    from apps.policies.models import PolicyReplay
    from apps.policies.replay import policy_replay_request, policy_replay_run

    def make(version, by):
        replay = policy_replay_request(actor=Actor(user=by), version=version, days=30)
        replay = policy_replay_run(replay_id=replay.pk)
        assert replay.status == PolicyReplay.Status.SUCCEEDED, replay.error
        return replay

    return make
