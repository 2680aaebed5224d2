"""Drafts to live versions: who may do what, in which state, and the audit entry for each step.

Editors create and change drafts and may ask for approval. Publishers also publish, approve and
roll back. With approval required, a draft goes live only when a publisher who did not change it
and did not ask for it approves; what they approve cannot change meanwhile (a pending draft is
locked). Published versions are never changed: a rollback publishes an old source again.
"""

from __future__ import annotations

import secrets
import time

from decisions.errors import ValidationFailed
from decisions.service import DecisionService
from state import ConsoleState
from state.accounts import PUBLISHER, Account
from state.audit import AuditEntry
from state.drafts import DISCARDED, DRAFT, PENDING, PUBLISHED, Draft
from state.versions import Version, unified_diff


class Refused(Exception):
    """The signed-in user may not do this now; the message says why."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


def _need_publisher(user: Account, what: str) -> None:
    if user.role != PUBLISHER:
        raise Refused(f"only a publisher can {what}; {user.username} is an {user.role}")


class Workflow:
    def __init__(
        self, service: DecisionService, state: ConsoleState, *, require_approval: bool
    ) -> None:
        self.service = service
        self.state = state
        self.require_approval = require_approval

    async def audit(self, actor: str, action: str, target: str = "", detail: str = "") -> None:
        await self.state.audit.add(AuditEntry(time.time(), actor, action, target, detail))

    async def live_source(self) -> str:
        number = self.service.version
        version = await self.service.get_version(number) if number else None
        return version.source if version else "tables: []\n"

    async def diff_against_live(self, draft: Draft) -> str:
        return unified_diff(
            await self.live_source(), draft.source, f"live v{self.service.version or 0}", "draft"
        )

    async def draft(self, draft_id: str) -> Draft:
        found = await self.state.drafts.get(draft_id)
        if found is None:
            raise Refused("no such draft", 404)
        return found

    async def create(self, user: Account, title: str, source: str | None = None) -> Draft:
        now = time.time()
        draft = Draft(
            id=secrets.token_hex(6),
            title=(title.strip() or "untitled change")[:200],
            source=source if source is not None else await self.live_source(),
            base_version=self.service.version,
            author=user.username,
            created_at=now,
            updated_at=now,
            updated_by=user.username,
            editors=(user.username,),
        )
        await self.state.drafts.create(draft)
        await self.audit(user.username, "draft created", f"draft {draft.id}", draft.title)
        return draft

    async def save(self, user: Account, draft_id: str, source: str, what: str) -> Draft:
        """Store a new source for the draft once it validates (raises ValidationFailed)."""
        current = await self.draft(draft_id)
        await self.service.check(source)
        editors = tuple(dict.fromkeys((*current.editors, user.username)))
        saved = await self.state.drafts.change(
            draft_id,
            [DRAFT],
            source=source,
            updated_at=time.time(),
            updated_by=user.username,
            editors=editors,
        )
        if saved is None:
            raise Refused(f"this draft is {current.state} and can no longer be edited", 409)
        await self.audit(user.username, "draft saved", f"draft {draft_id}", what)
        return saved

    async def discard(self, user: Account, draft_id: str) -> None:
        if await self.state.drafts.change(draft_id, [DRAFT, PENDING], state=DISCARDED) is None:
            raise Refused("only a draft or a pending draft can be discarded", 409)
        await self.audit(user.username, "draft discarded", f"draft {draft_id}")

    async def publish(self, user: Account, draft_id: str, comment: str) -> Version | Draft:
        """Publish now (a publisher, approval not required), else ask for approval: the new
        version, or the pending draft."""
        comment = comment.strip()
        if not comment:
            raise Refused("a publish needs a comment: say what changes for shoppers", 422)
        if self.require_approval:
            return await self._request(user, draft_id, comment)
        _need_publisher(user, "publish")
        return await self._go_live(user, draft_id, [DRAFT], comment, approved_by=None)

    async def _request(self, user: Account, draft_id: str, comment: str) -> Draft:
        draft = await self.draft(draft_id)
        await self.service.check(draft.source)
        pending = await self.state.drafts.change(
            draft_id,
            [DRAFT],
            state=PENDING,
            comment=comment[:500],
            requested_by=user.username,
            updated_at=time.time(),
        )
        if pending is None:
            raise Refused(f"this draft is {draft.state}", 409)
        await self.audit(user.username, "approval requested", f"draft {draft_id}", comment)
        return pending

    async def approve(self, user: Account, draft_id: str) -> Version:
        _need_publisher(user, "approve")
        draft = await self.draft(draft_id)
        if user.username == draft.requested_by or user.username in draft.editors:
            raise Refused("a second publisher must approve: you changed or submitted this draft")
        return await self._go_live(user, draft_id, [PENDING], draft.comment, user.username)

    async def send_back(self, user: Account, draft_id: str) -> None:
        """A pending draft returns to editing (changes requested, or withdrawn by its asker)."""
        draft = await self.draft(draft_id)
        if user.role != PUBLISHER and user.username != draft.requested_by:
            raise Refused("only a publisher or whoever asked for approval can send it back")
        if await self.state.drafts.change(draft_id, [PENDING], state=DRAFT) is None:
            raise Refused("this draft is not waiting for approval", 409)
        await self.audit(user.username, "sent back to draft", f"draft {draft_id}")

    async def _go_live(
        self, user: Account, draft_id: str, expect: list[str], comment: str, approved_by: str | None
    ) -> Version:
        draft = await self.draft(draft_id)
        # Claim the draft first: of two publishers clicking at once, one publishes.
        claimed = await self.state.drafts.change(
            draft_id, expect, state=PUBLISHED, approved_by=approved_by, comment=comment[:500]
        )
        if claimed is None:
            raise Refused(f"this draft is {draft.state}", 409)
        try:
            version = await self.service.publish(draft.source, user.username, comment[:500])
        except ValidationFailed:
            await self.state.drafts.change(draft_id, [PUBLISHED], state=draft.state)
            raise
        await self.state.drafts.change(draft_id, [PUBLISHED], published_version=version.version)
        if approved_by:
            await self.audit(user.username, "approved", f"draft {draft_id}", f"v{version.version}")
        await self.audit(user.username, "published", f"v{version.version}", comment)
        return version

    async def rollback(self, user: Account, number: int, reason: str) -> Version:
        """Publish version `number` again. It was reviewed when it first went live, so it needs
        no second approval: rolling back is how a bad change is undone quickly."""
        _need_publisher(user, "roll back")
        old = await self.service.get_version(number)
        if old is None:
            raise Refused("no such version", 404)
        comment = f"rollback to v{number}" + (f": {reason.strip()}" if reason.strip() else "")
        version = await self.service.publish(old.source, user.username, comment[:500])
        await self.audit(user.username, "rolled back", f"v{version.version}", comment)
        return version
