"""Lua scripts: the queue operations that must happen atomically inside Redis.

A script runs without interleaving and its effects are replicated / written to the AOF as one
transaction, so a crash never leaves half of one applied.
"""

from __future__ import annotations

# KEYS[1] stream, KEYS[2] id set; ARGV[1] item id, ARGV[2] payload JSON.
# Returns the new entry id, or nil when the item id was already published. The id is recorded only
# after XADD succeeded, so a failed XADD (e.g. out of memory) does not swallow the item.
PUBLISH = """
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  return false
end
local entry_id = redis.call('XADD', KEYS[1], '*', 'item_id', ARGV[1], 'data', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return entry_id
"""

# KEYS[1] source stream, KEYS[2] dead-letter stream, KEYS[3] errors hash.
# ARGV: group, entry id, item id, payload, error ('' = use the recorded one), deliveries, time,
#       fallback error text, raw fields (base64 JSON; '' = the entry decoded fine, none kept).
# Returns 1 when dead-lettered, 0 when the entry is no longer pending in the group (already acked or
# dead-lettered by another consumer). That check de-duplicates dead letters by source entry id; the
# dead letter is written before the XACK, all in one script.
DEAD_LETTER = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #pending == 0 then
  return 0
end
local err = ARGV[5]
if err == '' then
  err = redis.call('HGET', KEYS[3], ARGV[2])
  if not err then
    err = ARGV[8]
  end
end
local fields = {'stream', KEYS[1], 'group', ARGV[1], 'entry_id', ARGV[2], 'item_id', ARGV[3],
  'data', ARGV[4], 'error', err, 'deliveries', ARGV[6], 'time', ARGV[7]}
if ARGV[9] ~= nil and ARGV[9] ~= '' then
  table.insert(fields, 'raw')
  table.insert(fields, ARGV[9])
end
redis.call('XADD', KEYS[2], '*', unpack(fields))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
return 1
"""

# KEYS[1] stream; ARGV[1] group, ARGV[2] idle threshold (ms).
# Deletes the group's consumers idle longer than the threshold that hold no pending entry, and returns
# their names. One script, so no consumer can take an entry between the check and the delete (a
# consumer deleted with pending entries would orphan them until another consumer's reclaim).
REMOVE_STALE_CONSUMERS = """
local removed = {}
local consumers = redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
for _, consumer in ipairs(consumers) do
  local info = {}
  for i = 1, #consumer, 2 do
    info[consumer[i]] = consumer[i + 1]
  end
  if tonumber(info['pending']) == 0 and tonumber(info['idle']) > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    table.insert(removed, info['name'])
  end
end
return removed
"""

# KEYS[1] dead-letter stream, KEYS[2] origin stream; ARGV[1] dead entry id, ARGV[2] item id,
# ARGV[3] payload. Re-adds the payload to its origin stream, then deletes the dead letter: if XADD
# fails the script stops before XDEL, so a dead letter is never dropped without its copy. Returns the
# new entry id, or nil when the dead letter is gone (requeued already: running twice is harmless).
REQUEUE = """
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then
  return false
end
local entry_id = redis.call('XADD', KEYS[2], '*', 'item_id', ARGV[2], 'data', ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[1])
return entry_id
"""
