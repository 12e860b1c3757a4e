"""The console's dead-letter pages: depths, a peek with reasons, a masked body, act.

All through :class:`shared.operations.deadletters.DeadLetters`, the same object
behind ``/v1/deadletters``. Replay and delete go through a confirmation page that
says what will happen, and the result page shows the depth before and after.
"""

from __future__ import annotations

from collections import Counter

from fastapi import Request
from fastapi.responses import Response

from services.sweeper.console.app import Console, first

ACTIONS = {
    "replay": "sent back to their source queue, then deleted here; the intake is "
              "idempotent, so a message whose job already exists is acknowledged, not "
              "run twice",
    "delete": "deleted from the dead-letter queue for good",
}


def add_deadletter_pages(console: Console) -> None:
    router = console.router
    letters = console.letters

    async def unknown(request: Request, queue: str) -> Response | None:
        if queue in letters.queues:
            return None
        session, fresh = await console.session(request)
        return console.render(request, session, "error.html", fresh=fresh, status=404,
                              title="Unknown queue", message=f"{queue} is not a dead-letter "
                              "queue this sweeper looks after.")

    @router.get("/deadletters")
    async def depths(request: Request) -> Response:
        session = await console.gate(request)
        if isinstance(session, Response):
            return session
        return console.render(request, session, "deadletters.html",
                              dlqs=await letters.depths())

    @router.get("/deadletters/{queue}")
    async def queue_page(request: Request, queue: str) -> Response:
        session = await console.gate(request)
        if isinstance(session, Response):
            return session
        if (missing := await unknown(request, queue)) is not None:
            return missing
        messages = await letters.peek(queue)
        visible, in_flight = await letters.depth(queue)
        reasons = Counter(m.reason for m in messages)
        return console.render(request, session, "deadletter_queue.html", queue=queue,
                              source=letters.sources[queue], messages=messages,
                              reasons=sorted(reasons.items()), visible=visible,
                              in_flight=in_flight)

    @router.get("/deadletters/{queue}/messages/{message_id}")
    async def message_page(request: Request, queue: str, message_id: str) -> Response:
        session = await console.gate(request)
        if isinstance(session, Response):
            return session
        if (missing := await unknown(request, queue)) is not None:
            return missing
        found = await letters.get(queue, message_id)
        return console.render(request, session, "deadletter_message.html", queue=queue,
                              message=found, message_id=message_id,
                              status=200 if found else 404)

    @router.post("/deadletters/{queue}/confirm")
    async def confirm(request: Request, queue: str) -> Response:
        gate = await console.post_gate(request)
        if isinstance(gate, Response):
            return gate
        session, form = gate
        if (missing := await unknown(request, queue)) is not None:
            return missing
        action = first(form, "action")
        ids = [i for i in form.get("message_id", []) if i.strip()]
        reason = first(form, "reason")
        if action not in ACTIONS or not (ids or reason):
            return console.render(request, session, "error.html", status=400,
                                  title="Nothing selected", message="Choose replay or "
                                  "delete, and select messages or a reason.")
        visible, _ = await letters.depth(queue)
        return console.render(request, session, "deadletter_confirm.html", queue=queue,
                              source=letters.sources[queue], action=action, ids=ids,
                              reason=None if ids else reason, what=ACTIONS[action],
                              visible=visible)

    @router.post("/deadletters/{queue}/act")
    async def act(request: Request, queue: str) -> Response:
        gate = await console.post_gate(request)
        if isinstance(gate, Response):
            return gate
        session, form = gate
        if (missing := await unknown(request, queue)) is not None:
            return missing
        action = first(form, "action")
        ids = [i for i in form.get("message_id", []) if i.strip()] or None
        reason = None if ids else (first(form, "reason") or None)
        if action not in ACTIONS or not (ids or reason):
            return console.render(request, session, "error.html", status=400,
                                  title="Nothing selected", message="Nothing was done.")
        run = letters.replay if action == "replay" else letters.delete
        result = await run(queue, message_ids=ids, reason=reason, actor=str(session.actor))
        return console.render(request, session, "deadletter_done.html", result=result,
                              source=letters.sources[queue])
