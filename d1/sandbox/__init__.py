"""A local D1: an ASGI app that speaks D1's protocol, and a Python API to drive it from tests.

Contract (other modules and tests code against these names):

    from d1.sandbox import Sandbox, SandboxConfig, generate_es256_keypair
    priv_pem, pub_pem = generate_es256_keypair()          # PEM strings
    sandbox = Sandbox(SandboxConfig(issuer_id="issuer-001", key_id="key-1",
                                    public_key_pem=pub_pem, callback_url=..., seed=1))
    sandbox.app                     # Starlette ASGI app; its lifespan runs delivery/auto-advance
    sandbox.create_card(card_id, scenario="happy", masked_pan=..., name=..., address=...,
                        carrier="fedex")                   # seeds a card; no notification
    await sandbox.order(card_id, request)  # as operations:production: emits CARD_PROD_REQUESTED
    sandbox.advance(card_id)        # one lifecycle step -> list of operations queued
    sandbox.advance_all()           # one step for every card that can move
    sandbox.run_scenario(card_id)   # all remaining steps queued at once
    sandbox.track(card_id, request) # as the tracking hub's track endpoint
    await sandbox.flush(timeout=10) # deliver everything queued; returns when acknowledged
    sandbox.status_of(card_id)      # the productionStatus body the API would answer
    sandbox.set_callback(url, client_id=..., client_secret=..., static_token=...)
    sandbox.faults.fail_next("productionStatus", status=503, count=2)  # also "track",
                                    # "order", "token", "callback" (deliveries fail)
    sandbox.faults.delay_next("productionStatus", seconds=5, count=1)
    sandbox.faults.drop_next_notifications(count)  # lost, never delivered, still in state
    sandbox.delivered               # every delivery attempt: (operations, http_status)
    sandbox.refused                 # deliveries refused with a 4xx: lost, never retried
    sandbox.violations              # strict mode: requests that did not conform to d1/spec
    sandbox.requests                # API requests received: RequestRecord(path, method, ...)
    sandbox.token_requests          # count of successful token grants
    sandbox.emitted                 # every operation emitted, in order (including dropped ones)
    sandbox.revoke_tokens()         # D1 forgets its access tokens (next call gets a 401)
    sandbox.issuer_private_key_pem  # set when the sandbox generated the key pair itself

Scenarios (`d1.sandbox.scenarios.SCENARIOS`): happy, data_exception, onhold, shipment_exception,
failed_attempt, return, prod_exception, canceled, external (tracking hub only). A card ordered
over HTTP picks its scenario from its id prefix (`onhold-1`) or `SandboxConfig.default_scenario`.
A first `advance` of a seeded card is its order (CARD_PROD_REQUESTED).

It does not flatter its client. By default deliveries carry duplicates (`duplicate_rate`) in
shuffled order, as single-operation bodies and `{"operations": [...]}` bodies alike
(`body_shape`); a 4xx answer is final (recorded in `refused`, logged, counted as lost); only
statuses of D1's enum appear in `productionStatus`; orders and tracking requests D1 would refuse
are refused with D1's error codes (`d1.sandbox.checks`); and `strict=True` (`--strict`) checks
every request against the spec files (`d1.sandbox.strict`). Tests that need calm traffic say
so: `duplicate_rate=0, shuffle=False, body_shape="bulk"`.
"""

from __future__ import annotations

from d1.sandbox.base import OrderRefused, RequestRecord, SandboxConfig, UnknownCard
from d1.sandbox.faults import Faults
from d1.sandbox.scenarios import SCENARIOS, SHIPMENT_MESSAGES
from d1.sandbox.service import Sandbox
from d1.tokens import generate_es256_keypair

__all__ = [
    "SCENARIOS",
    "SHIPMENT_MESSAGES",
    "Faults",
    "OrderRefused",
    "RequestRecord",
    "Sandbox",
    "SandboxConfig",
    "UnknownCard",
    "generate_es256_keypair",
]
