"""OpenAI-compatible LLM (llama-server, prima.cpp) that fails soft.

A failed turn (server unreachable, HTTP error, no first token within
``first_token_timeout``) does not push a permanent ErrorFrame, so pipecat never marks the
service unusable (it does on an HTTP 400): it logs the error (redacted), pushes an
:class:`~pipecatapp.resilience.LLMFailedFrame` downstream so the apology is spoken, and the
next turn tries the server again.

All of it happens in ``get_chat_completions``, the public step of pipecat's OpenAI service
that opens the completion stream (pipecat's own NVIDIA service wraps it the same way): the
request and the stream it returns are guarded, and a failure ends the stream early, so
pipecat's streaming loop sees a short answer and never an exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
from loguru import logger
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionChunk
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.services.openai.llm import OpenAILLMService

from pipecatapp.errors import redact
from pipecatapp.resilience import LLMFailedFrame


def join_unanswered(context: LLMContext) -> bool:
    """Join a user message that got no answer with the user message after it.

    The user's turn ends at a pause once its transcript sounds finished, so a pause inside a
    question ("Who wrote Romeo? | and Juliet.") can end it; when the user goes on before the
    bot has said anything, the interrupted reply leaves nothing in the context and the rest
    arrives as a second user message. Two user messages in a row read to a small model as
    two questions (SmolLM2 answered "and Juliet." on its own); joined, they are the question
    that was asked. Only plain-text messages are joined; returns whether any were. The
    service calls it only after a reply that an interruption cut before its first token (a
    failed turn was answered by the apology, and its question is not asked again).
    """
    messages = context.get_messages()
    joined = list(messages)
    changed = False
    while len(joined) >= 2 and all(
        isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str)
        for m in joined[-2:]
    ):
        earlier, later = joined[-2], joined[-1]
        text = f"{str(earlier['content']).strip()} {str(later['content']).strip()}".strip()
        joined[-2:] = [{**earlier, "content": text}]
        changed = True
    if changed:
        context.set_messages(joined)
    return changed


class FirstTokenTimeout(TimeoutError):
    """The LLM produced no first token in time."""


class LocalOpenAILLMService(OpenAILLMService):
    """OpenAILLMService for local OpenAI-compatible servers, with a first-token deadline."""

    # GGUF chat templates know system/user/assistant only.
    supports_developer_role = False

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str = "default",
        max_tokens: int = 150,
        temperature: float = 0.2,
        system_prompt: str = "",
        first_token_timeout: float = 4.0,
        max_history: int = 16,
        repeat_penalty: float = 1.0,
    ) -> None:
        self._secret = api_key
        self._max_history = max_history
        # Whether the last request ended in an answer: text, an empty reply or a failure
        # (the apology). Only a reply cut by an interruption before its first token leaves
        # its user message unanswered, to be joined with the next one.
        self._answered = True
        self._first_token_timeout = first_token_timeout
        super().__init__(
            base_url=base_url,
            # The OpenAI client needs a non-empty key; llama-server without --api-key ignores it.
            api_key=api_key or "not-needed",
            settings=OpenAILLMService.Settings(
                model=model,
                max_tokens=max_tokens,
                temperature=temperature,
                system_instruction=system_prompt or None,
                # llama.cpp's sampler option (prima.cpp's server has it too); not an OpenAI
                # field, so it travels in extra_body. 1.0 sends nothing.
                extra=(
                    {"extra_body": {"repeat_penalty": repeat_penalty}}
                    if repeat_penalty != 1.0
                    else {}
                ),
            ),
        )

    def create_client(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        default_headers: dict[str, str] | None = None,
        **kwargs: object,
    ) -> AsyncOpenAI:
        # No client-side retries: a dead server must turn into an apology quickly.
        return AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            default_headers=default_headers,
            max_retries=0,
            timeout=httpx.Timeout(60.0, connect=2.0),
        )

    def _trim(self, context: LLMContext) -> None:
        """Bound the conversation, so it never outgrows the server's context window (which
        would fail every turn from then on with HTTP 400), in a way that keeps the server's
        prompt cache useful.

        Dropping the oldest exchange every turn would change the start of the prompt every
        turn, and llama-server would evaluate the whole prompt again: the first token took
        0.93 s instead of 0.10 s in the voice benchmark once the history was full. So the
        history is cut back to half of ``max_history`` (from a user message on) when it
        exceeds the bound, and then grows undisturbed: one changed prompt start every
        ``max_history / 4`` turns instead of every turn. On that turn the embedded
        llama-server (``--cache-reuse``) shifts the kept messages' cached tokens instead of
        evaluating them again (137 -> 31 tokens in tests/app/test_llm_service.py).
        """
        messages = context.get_messages()
        if len(messages) <= self._max_history:
            return
        kept = messages[-max(1, self._max_history // 2) :]
        while kept and not (isinstance(kept[0], dict) and kept[0].get("role") == "user"):
            kept = kept[1:]
        if kept:
            context.set_messages(kept)

    async def get_chat_completions(self, context: LLMContext) -> AsyncIterator[ChatCompletionChunk]:
        """The completion stream, guarded: a failure or a missing first token ends it early
        (with the apology), never with an exception."""
        unanswered, self._answered = not self._answered, False
        if unanswered and join_unanswered(context):
            logger.info("joined the unanswered user message with the next one")
        self._trim(context)
        deadline = asyncio.get_running_loop().time() + self._first_token_timeout
        try:
            async with asyncio.timeout_at(deadline):
                stream = await super().get_chat_completions(context)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            await self._failed(self._reason(e))
            return _no_chunks()
        return self._guarded(stream, deadline)

    async def _guarded(
        self, stream: AsyncIterator[ChatCompletionChunk], deadline: float
    ) -> AsyncIterator[ChatCompletionChunk]:
        """``stream``'s chunks, until it fails or (before the first token of text) until
        ``deadline``; then the apology and the end of the stream."""
        chunks = aiter(stream)
        waiting = True  # for the first token of text: the deadline applies
        try:
            while True:
                try:
                    if waiting:
                        async with asyncio.timeout_at(deadline):
                            chunk = await anext(chunks)
                    else:
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                if waiting and _has_text(chunk):
                    waiting = False
                    self._answered = True
                yield chunk
            if waiting:
                self._answered = True
                logger.warning(f"{self}: the LLM returned an empty answer")
        except asyncio.CancelledError:
            raise
        except Exception as e:
            await self._failed(self._reason(e))
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                await close()

    def _reason(self, e: Exception) -> str:
        if isinstance(e, TimeoutError):
            return f"no first token within {self._first_token_timeout:g} s"
        return f"{type(e).__name__}: {e}"

    async def _failed(self, reason: str) -> None:
        self._answered = True  # by the apology
        reason = redact(reason, self._secret)
        logger.error(f"{self}: LLM request failed ({reason}); speaking the apology")
        await self.stop_ttfb_metrics()
        await self.push_frame(LLMFailedFrame(reason=reason))


async def _no_chunks() -> AsyncIterator[ChatCompletionChunk]:
    """A completion stream with nothing in it (the request failed)."""
    return
    yield


def _has_text(chunk: ChatCompletionChunk) -> bool:
    """Whether the chunk carries answer text (what pipecat pushes as an LLMTextFrame)."""
    return bool(chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content)
