"""`/card settings`: how card updates are posted in a channel (its thread mode), shown and
changed for the agent who asked. Delivery reads the stored mode (bot/delivery/kinds.py)."""

from __future__ import annotations

from bot.render import views
from bot.runtime import Runtime
from bot.slack.auditing import Invoker, in_thread
from storage.repositories import channel_settings as repo

# What each mode means, in the words an agent reads.
MODE_WORDS = {
    repo.THREADS_ON: "each card's updates go in its thread, and exceptions are also shown in "
    "the channel",
    repo.THREADS_OFF: "each update is its own message in the channel, without threads",
    repo.THREADS_QUIET: "each card's updates go in its thread, and nothing is shown in the channel",
}


class ChannelSettings:
    """A channel's settings, shown and changed for the agent who asked."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def show(self, who: Invoker) -> views.Reply:
        mode = await in_thread(
            self.runtime.engine,
            repo.thread_mode,
            workspace_id=who.workspace_id,
            channel_id=who.channel_id,
        )
        others = ", ".join(f"`{m}`" for m in repo.THREAD_MODES if m != mode)
        return views.message_reply(
            f"Threads in this channel: *{mode}*: {MODE_WORDS[mode]}.\n"
            f"Change it with `/card settings threads <mode>` ({others})."
        )

    async def set_threads(self, who: Invoker, mode: str) -> views.Reply:
        before = await in_thread(
            self.runtime.engine,
            repo.set_thread_mode,
            workspace_id=who.workspace_id,
            channel_id=who.channel_id,
            mode=mode,
            now=self.runtime.clock(),
        )
        if before == mode:
            return views.message_reply(
                f"Threads in this channel were already *{mode}*: {MODE_WORDS[mode]}."
            )
        return views.message_reply(
            f"Threads in this channel are now *{mode}* (they were *{before}*): {MODE_WORDS[mode]}.",
            emoji="white_check_mark",
        )
