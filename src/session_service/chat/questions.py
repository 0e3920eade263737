"""What a turn writes first, under its lease: a question on the active leaf or under an earlier
answer (an edit), or a new answer to a stored question (a regeneration), each with the
placeholder of the reply to come, which becomes the session's active leaf; and the stored
pair of a repeated `client_message_id`."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from session_service.chat.generation import TurnResult
from session_service.chat.public import MessagePublic, described
from session_service.db.models import ChatMessage, ChatSession, MessageStatus
from session_service.db.repositories import MessageRepository, SessionRepository
from session_service.db.search import SearchRepository
from session_service.db.tree import TreeRepository
from session_service.db.types import utcnow
from session_service.errors import Conflict, InvalidInput, NotFound


@dataclass(frozen=True, slots=True)
class Ask:
    """A new question: on the active leaf, or (`edit`) under `parent_id`, an earlier answer
    of the session (None: a new first message)."""

    content: str
    client_message_id: str | None = None
    edit: bool = False
    parent_id: int | None = None


@dataclass(frozen=True, slots=True)
class Regenerate:
    """A new answer to the question of the assistant message `message_id`."""

    message_id: int


@dataclass(frozen=True, slots=True)
class Opened:
    """The question (new or stored) and its reply's placeholder, as stored and as shown."""

    question: ChatMessage
    placeholder: ChatMessage
    shown: MessagePublic  # the question, with its siblings
    reply_siblings: list[int]


async def answered(db: AsyncSession, session_id: str, ask: Ask) -> TurnResult | None:
    """The stored pair for a repeated client_message_id, if its (first) answer is stored."""
    assert ask.client_message_id is not None
    question = await MessageRepository.from_session(db).by_client_id(
        session_id, ask.client_message_id
    )
    if question is None:
        return None
    _same_question(question, ask)
    reply = await TreeRepository.from_session(db).first_reply(question)
    if reply is None or reply.meta.get("status") == MessageStatus.STREAMING:
        return None
    shown_question, shown_reply = await described(db, [question, reply])
    return TurnResult(shown_question, shown_reply, created=False)


async def ask(db: AsyncSession, row: ChatSession, ask: Ask) -> Opened:
    """The user's message (a retried failed one is reused) and a placeholder answer."""
    messages = MessageRepository.from_session(db)
    parent = await edited(db, row.session_id, ask) if ask.edit else row.active_message_id
    question = None
    if ask.client_message_id is not None:
        question = await messages.by_client_id(row.session_id, ask.client_message_id)
        if question is not None:
            _same_question(question, ask)
            if question.id != row.active_message_id:
                raise Conflict(
                    "client_message_id was used for an earlier message that is no longer "
                    "the latest; send the message again with a new client_message_id"
                )
    seq = row.message_count + 1
    if question is None:
        question = await messages.insert(
            ChatMessage(
                session_id=row.session_id,
                seq=seq,
                parent_id=parent,
                role="user",
                content=ask.content,
                timestamp=utcnow(),
                client_message_id=ask.client_message_id,
            )
        )
        seq += 1
    siblings = None  # on the active leaf, which has no children: the question alone
    if ask.edit:
        siblings = (await TreeRepository.from_session(db).children(row.session_id, [parent]))[
            parent
        ]
    shown = MessagePublic.of(question, siblings)
    return await _placeholder(db, row, question, shown, [], seq)


async def regenerate(db: AsyncSession, row: ChatSession, step: Regenerate) -> Opened:
    """A new placeholder beside the answer `step.message_id`, under the same question."""
    answer = await regenerated(db, row.session_id, step)
    assert answer.parent_id is not None  # an answer's parent is its question
    question = await MessageRepository.from_session(db).get(answer.parent_id)
    assert question is not None
    (shown,) = await described(db, [question])
    tree = TreeRepository.from_session(db)
    others = (await tree.children(row.session_id, [question.id]))[question.id]
    return await _placeholder(db, row, question, shown, others, row.message_count + 1)


async def _placeholder(
    db: AsyncSession,
    row: ChatSession,
    question: ChatMessage,
    shown: MessagePublic,
    others: list[int],
    seq: int,
) -> Opened:
    """The reply's placeholder (numbered `seq`) under `question`, made the active leaf;
    `others`: the answers the question already has."""
    now = utcnow()
    placeholder = await MessageRepository.from_session(db).insert(
        ChatMessage(
            session_id=row.session_id,
            seq=seq,
            parent_id=question.id,
            role="assistant",
            content="",
            timestamp=now,
            meta={"status": MessageStatus.STREAMING},
        )
    )
    assert placeholder.id is not None
    await SessionRepository.from_session(db).record_messages(
        row.session_id, seq - row.message_count, now, generating=placeholder.id
    )
    return Opened(question, placeholder, shown, [*others, placeholder.id])


async def reopened(db: AsyncSession, row: ChatSession) -> Opened:
    """The question and placeholder a turn stored (`row` as they left it: its generating
    placeholder), read back: the turn's commit happened, and its answer was lost."""
    assert row.generating_message_id is not None
    messages = MessageRepository.from_session(db)
    placeholder = await messages.get(row.generating_message_id)
    assert placeholder is not None
    assert placeholder.parent_id is not None
    question = await messages.get(placeholder.parent_id)
    assert question is not None
    assert question.id is not None
    (shown,) = await described(db, [question])
    tree = TreeRepository.from_session(db)
    siblings = (await tree.children(row.session_id, [question.id]))[question.id]
    return Opened(question, placeholder, shown, siblings)


async def index_turn(db: AsyncSession, row: ChatSession, opened: Opened, reply: str) -> None:
    """The turn's question (again, for a regeneration or a retry: ignored) and its reply
    (unless it has no text), in the search index: one statement for the turn."""
    question = opened.question
    assert question.id is not None
    assert opened.placeholder.id is not None
    texts = [(question.id, question.content), (opened.placeholder.id, reply)]
    await SearchRepository.from_session(db).index(row.user_id, texts)


async def regenerated(db: AsyncSession, session_id: str, step: Regenerate) -> ChatMessage:
    """The answer a regeneration replaces: an assistant message of the session (404 if it is
    not the session's) whose reply is not being generated."""
    answer = await MessageRepository.from_session(db).get(step.message_id)
    if answer is None or answer.session_id != session_id:
        raise NotFound("Message not found")
    if answer.role != "assistant":
        raise InvalidInput(f"message {step.message_id} is not an assistant message")
    _not_streaming(answer, f"message {step.message_id}")
    return answer


async def edited(db: AsyncSession, session_id: str, ask: Ask) -> int | None:
    """An edit's parent: None (a new first message), or an assistant message of the session
    whose reply is stored."""
    if ask.parent_id is None:
        return None
    parent = await MessageRepository.from_session(db).get(ask.parent_id)
    if parent is None or parent.session_id != session_id or parent.role != "assistant":
        raise InvalidInput(f"parent_id {ask.parent_id} is not an assistant message of this session")
    _not_streaming(parent, f"parent_id {ask.parent_id}")
    return parent.id


def _not_streaming(message: ChatMessage, name: str) -> None:
    if message.meta.get("status") == MessageStatus.STREAMING:
        raise InvalidInput(
            f"{name} is a reply still being generated; wait for it, or stop it first"
        )


def _same_question(question: ChatMessage, ask: Ask) -> None:
    """A repeated client_message_id must repeat its message, not send another one."""
    if question.content != ask.content or (ask.edit and question.parent_id != ask.parent_id):
        raise Conflict(
            "client_message_id was already used for a different message; send this one "
            "with a new client_message_id"
        )
