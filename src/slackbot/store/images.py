"""Images in Redis (issue 21): which images a thread holds that the bot may edit, and the daily caps.

* A thread's images: a list of small JSON entries (file id, name, MIME type, Slack's download URL, who
  shared it), newest first, under the thread's hash tag with the chain's TTL, so "now make it blue"
  finds the bot's latest picture as long as the conversation itself is remembered. Never the bytes:
  they are fetched again from Slack when an edit needs them.
* The daily caps: one hash per workspace and UTC day (the workspace's hash tag), a field for the
  workspace and one per person; one script checks both caps and counts the image, so two replicas
  can never both take the last one. A generation that fails gives its image back.
"""

from __future__ import annotations

import json
from enum import Enum

import redis.asyncio as aioredis

from .keys import TurnKeys

KEPT = 20  # images remembered per thread (the newest)
_DAY_SECONDS = 2 * 86400  # a day's counts outlive the day (clocks differ between replicas)
_WORKSPACE = "*"  # the workspace's field in the day's hash (user ids never contain it)

# KEYS[1] the day's hash; ARGV: user, per-user cap, per-workspace cap, ttl
_TAKE = """
local mine = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local all = tonumber(redis.call('HGET', KEYS[1], '*') or '0')
if mine >= tonumber(ARGV[2]) then return 0 end
if all >= tonumber(ARGV[3]) then return -1 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HINCRBY', KEYS[1], '*', 1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""

# KEYS[1] the day's hash; ARGV: user
_GIVE_BACK = """
if tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') > 0 then redis.call('HINCRBY', KEYS[1], ARGV[1], -1) end
if tonumber(redis.call('HGET', KEYS[1], '*') or '0') > 0 then redis.call('HINCRBY', KEYS[1], '*', -1) end
return 1
"""

# KEYS[1] the thread's list; ARGV: entry JSON, kept, ttl. An entry already there (same file) moves to the front.
_REMEMBER = """
redis.call('LREM', KEYS[1], 0, ARGV[1])
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


class ImageQuota(Enum):
    """The daily caps' verdict (`_TAKE`); the values are what the script returns."""

    PERSON_FULL = 0
    WORKSPACE_FULL = -1
    TAKEN = 1


class ImageStore:
    def __init__(self, redis: aioredis.Redis, prefix: str, *, chain_ttl: int):
        self.keys = TurnKeys(prefix)
        self.chain_ttl = chain_ttl
        self.redis = redis
        self._take = redis.register_script(_TAKE)
        self._give_back = redis.register_script(_GIVE_BACK)
        self._remember = redis.register_script(_REMEMBER)

    async def take(self, team: str, user: str, day: str, *, per_user: int, per_workspace: int) -> ImageQuota:
        """Count one image against both caps, atomically, unless either is reached."""
        key = self.keys.image_day(team, day)
        return ImageQuota(int(await self._take(keys=[key], args=[user, per_user, per_workspace, _DAY_SECONDS])))

    async def give_back(self, team: str, user: str, day: str) -> None:
        """An image counted but not made (the model failed or refused)."""
        await self._give_back(keys=[self.keys.image_day(team, day)], args=[user])

    async def remember(self, team: str, channel: str, thread: str, entry: dict) -> None:
        """An image the bot may edit later in this thread (the bot's upload, or one a person shared)."""
        await self._remember(keys=[self.keys.images(team, channel, thread)],
                             args=[json.dumps(entry, sort_keys=True), KEPT, self.chain_ttl])

    async def thread_images(self, team: str, channel: str, thread: str) -> list[dict]:
        """The thread's remembered images, newest first."""
        raw = await self.redis.lrange(self.keys.images(team, channel, thread), 0, KEPT - 1)
        return [json.loads(r) for r in raw]
