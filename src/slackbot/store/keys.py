"""Every Redis key the bot writes is spelled here, and only here.

Keys carry a Redis Cluster hash tag (the part in braces), which decides the slot, so that every
script touches one slot and the keys of many threads spread over every master:
- a thread's keys (chain head, presence, lock) and its turns' journal and dedup share the thread's tag;
- a research job's hash has the job's own tag; per-user keys (quotas, history, slots) the user's;
- the schedules (`turns:due`, `jobs:due`) are SHARDS sorted sets, each with a tag of its own; a turn
  or a job lives on the shard its tag hashes to, and every replica claims from all of them.
On a single node the tags are just characters. Rate-budget keys are the budget store's.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

SHARDS = 8  # schedule shards; fixed: changing it strands what is scheduled on the others


def shard_of(tag: str) -> int:
    return zlib.crc32(tag.encode()) % SHARDS


def turn_id(team: str, channel: str, thread: str, ts: str) -> str:
    """A turn's id names its thread, so its journal is found (and lands in its thread's slot) by id alone."""
    return f"{team}:{channel}:{thread}:{ts}"


def thread_of(turn: str) -> str:
    """The thread tag inside a turn id (team:channel:thread)."""
    return turn.rsplit(":", 1)[0]


@dataclass(frozen=True)
class TurnKeys:
    prefix: str

    def _thread(self, kind: str, tag: str) -> str:
        return f"{self.prefix}:{kind}:{{{tag}}}"

    def seen(self, turn: str) -> str:
        return f"{self._thread('seen', thread_of(turn))}:{turn.rsplit(':', 1)[-1]}"

    def turn(self, turn: str) -> str:
        return f"{self._thread('turn', thread_of(turn))}:{turn.rsplit(':', 1)[-1]}"

    def chain(self, team: str, channel: str, thread: str) -> str:
        return self._thread("chain", f"{team}:{channel}:{thread}")

    def presence(self, team: str, channel: str, thread: str) -> str:
        return self._thread("in", f"{team}:{channel}:{thread}")

    def lock(self, team: str, channel: str, thread: str) -> str:
        return self._thread("lock", f"{team}:{channel}:{thread}")

    def images(self, team: str, channel: str, thread: str) -> str:
        """The images in a thread the bot may edit (file ids and where Slack serves them, never bytes)."""
        return self._thread("images", f"{team}:{channel}:{thread}")

    def image_day(self, team: str, day: str) -> str:
        """A workspace's images made on one UTC day: a field for the workspace, one per person."""
        return f"{self.prefix}:imageday:{{{team}}}:{day}"

    def user_active(self, team: str, user: str) -> str:
        return f"{self.prefix}:quota:{{{team}:{user}}}:active"

    def user_minute(self, team: str, user: str) -> str:
        return f"{self.prefix}:quota:{{{team}:{user}}}:minute"

    def due_shard(self, shard: int) -> str:
        return f"{self.prefix}:turns:due:{{turns.{shard}}}"

    def due(self, turn: str) -> str:
        """The schedule shard a turn lives on (its thread's)."""
        return self.due_shard(shard_of(thread_of(turn)))

    @property
    def all_due(self) -> list[str]:
        return [self.due_shard(i) for i in range(SHARDS)]


@dataclass(frozen=True)
class JobKeys:
    prefix: str

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{{{job_id}}}"

    @property
    def any_job(self) -> str:
        """A SCAN pattern matching every job hash."""
        return f"{self.prefix}:job:*"

    def due_shard(self, shard: int) -> str:
        return f"{self.prefix}:jobs:due:{{jobs.{shard}}}"

    def due(self, job_id: str) -> str:
        return self.due_shard(shard_of(job_id))

    @property
    def all_due(self) -> list[str]:
        return [self.due_shard(i) for i in range(SHARDS)]

    def slots(self, team: str, user: str) -> str:
        return f"{self.prefix}:jobs:active:{{{team}:{user}}}"

    def history(self, team: str, user: str) -> str:
        return f"{self.prefix}:jobs:history:{{{team}:{user}}}"

    def trigger(self, team: str, trigger: str) -> str:
        return f"{self.prefix}:jobs:trigger:{{{team}:{trigger}}}"


@dataclass(frozen=True)
class AgentKeys:
    """The agent surface: what a person looks at (`ctx`), answer ratings (`fb`), weekly usage (`use`)."""

    prefix: str

    def context_now(self, team: str, user: str) -> str:
        return f"{self.prefix}:{{ctx:{team}:{user}}}:now"

    def context_session(self, team: str, user: str, channel: str, thread: str) -> str:
        return f"{self.prefix}:{{ctx:{team}:{user}}}:session:{channel}:{thread}"

    def votes(self, team: str, channel: str, ts: str) -> str:
        return f"{self.prefix}:{{fb:{team}}}:vote:{channel}:{ts}"

    def counts(self, team: str, day: str) -> str:
        return f"{self.prefix}:{{fb:{team}}}:day:{day}"

    def usage(self, team: str, user: str, week: str) -> str:
        return f"{self.prefix}:{{use:{team}:{user}}}:week:{week}"


@dataclass(frozen=True)
class GovernanceKeys:
    """Access, spend and forgetting: the message map, spend counters, caches, the retention schedule."""

    prefix: str

    def msgs(self, team: str, channel: str, thread: str) -> str:
        return f"{self.prefix}:msgs:{{{team}:{channel}:{thread}}}"

    def spend(self, scope: str, day: str) -> str:
        """A day's tokens of one scope (`team:u:U1`, `team:c:C1`, `team`): its own tag."""
        return f"{self.prefix}:spend:{{{scope}}}:{day}"

    def week(self, team: str, week: str) -> str:
        """A workspace's week: sorted set of `u:<user>` and `c:<channel>` by tokens."""
        return f"{self.prefix}:spendweek:{{{team}}}:{week}"

    def group(self, team: str, group: str) -> str:
        return f"{self.prefix}:group:{{{team}:{group}}}"

    def told(self, team: str, user: str, where: str) -> str:
        return f"{self.prefix}:told:{{{team}:{user}}}:{where}"

    def flag(self, team: str, user: str, name: str) -> str:
        return f"{self.prefix}:flag:{{{team}:{user}}}:{name}"

    def purge(self, team: str, channel: str, thread: str) -> str:
        """What is still to delete of a forgotten thread (beside its map, same slot): `g:<interaction id>`,
        `s:<bot message ts>`, `f:<bot upload id>`, `j:<research job id>` fields, each removed once done."""
        return f"{self.prefix}:purge:{{{team}:{channel}:{thread}}}"

    @property
    def purge_shards(self) -> list[str]:
        """Deletions' schedule: member = `<team:channel:thread>|<nonce>`, one per forgetting, due when a worker
        should finish what the forgetting process has not confirmed."""
        return [f"{self.prefix}:purge:due:{{purge.{i}}}" for i in range(SHARDS)]

    @property
    def retention_shards(self) -> list[str]:
        """Retention's schedule: member = a thread's tag (team:channel:thread), due when it is to be forgotten."""
        return [f"{self.prefix}:retain:due:{{retain.{i}}}" for i in range(SHARDS)]


@dataclass(frozen=True)
class Keys:
    """All of a prefix's keys: `turns`, `jobs`, `agent`, `governance`, and the readiness probes (one per schedule shard)."""

    prefix: str

    @property
    def turns(self) -> TurnKeys:
        return TurnKeys(self.prefix)

    @property
    def jobs(self) -> JobKeys:
        return JobKeys(self.prefix)

    @property
    def agent(self) -> AgentKeys:
        return AgentKeys(self.prefix)

    @property
    def governance(self) -> GovernanceKeys:
        return GovernanceKeys(self.prefix)

    @property
    def probes(self) -> list[str]:
        """One key in each schedule shard's slot: writing them all proves every shard takes writes."""
        tags = [f"turns.{i}" for i in range(SHARDS)] + [f"jobs.{i}" for i in range(SHARDS)]
        return [f"{self.prefix}:probe:{{{tag}}}" for tag in tags]

    @property
    def pattern(self) -> str:
        """A SCAN pattern matching every key of the prefix."""
        return f"{self.prefix}:*"

    def team_patterns(self, team: str) -> list[str]:
        """SCAN patterns matching every key of one installation (team or org id): keys whose hash tag
        is it or starts with it (threads, turns, quotas, job slots and history, spend), and those whose tag
        names it after a kind (`<method>:<team>[:<scope>]` rate buckets; `ctx:`, `fb:`, `use:` of the agent
        surface). Research job hashes carry the team in a field (Store.delete_team).
        Slack ids are [A-Z0-9], so none holds a glob character."""
        return [f"{self.prefix}:*{{{team}}}*", f"{self.prefix}:*{{{team}:*",  # {team}, {team:...}
                f"{self.prefix}:*{{*:{team}}}*", f"{self.prefix}:*{{*:{team}:*"]  # {kind:team}, {kind:team:...}
