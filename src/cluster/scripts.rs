//! The cluster's atomic steps, as Lua scripts run by Redis.
//!
//! Each step that reads and then writes a job's keys is one script, so no
//! other node or client can come in between. Keys are built from the prefix
//! inside the scripts, so the cluster needs a single Redis (or a primary with
//! replicas), not a Redis Cluster. `ARGV[1]` is always the prefix.

use std::sync::Mutex;

use redis::{Connection, RedisResult, Value};

/// A script and its digest once Redis has it.
pub(crate) struct Script {
    src: &'static str,
    sha: Mutex<Option<String>>,
}

impl Script {
    const fn new(src: &'static str) -> Script {
        Script {
            src,
            sha: Mutex::new(None),
        }
    }

    /// Runs the script with `args` (after the prefix): EVALSHA, loading it
    /// first when Redis lacks it (a restart without persistence loses it).
    pub(crate) fn run(&self, con: &mut Connection, args: &[&[u8]]) -> RedisResult<Value> {
        let known = self.sha.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let sha = match known {
            Some(s) => s,
            None => self.load(con)?,
        };
        match Self::evalsha(con, &sha, args) {
            Err(e) if e.code() == Some("NOSCRIPT") => {
                let sha = self.load(con)?;
                Self::evalsha(con, &sha, args)
            }
            r => r,
        }
    }

    fn load(&self, con: &mut Connection) -> RedisResult<String> {
        let sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(self.src).query(con)?;
        *self.sha.lock().unwrap_or_else(|p| p.into_inner()) = Some(sha.clone());
        Ok(sha)
    }

    fn evalsha(con: &mut Connection, sha: &str, args: &[&[u8]]) -> RedisResult<Value> {
        let mut c = redis::cmd("EVALSHA");
        c.arg(sha).arg(0);
        for a in args {
            c.arg(*a);
        }
        c.query(con)
    }
}

/// Shared Lua: the owner of a queue entry in the group's pending list.
macro_rules! lua_prelude {
    () => {
        r#"
local P = ARGV[1]
local Q = P .. ':queue'
local function owner(entry)
  if not entry or entry == '' then return nil end
  local p = redis.call('XPENDING', Q, 'nodes', entry, entry, 1)
  if p[1] then return p[1][2] end
  return nil
end
local function event(id, state, attempt, node, maxlen)
  redis.call('XADD', P .. ':events', 'MAXLEN', '~', maxlen, '*',
    'id', id, 'state', state, 'attempt', attempt, 'node', node)
end
local function retire(entry)
  if entry and entry ~= '' then
    redis.call('XACK', Q, 'nodes', entry)
    redis.call('XDEL', Q, entry)
  end
end
"#
    };
}

/// Submits a job once: ARGV id, spec, max_attempts, created_ms, events_maxlen.
/// Returns 1, or 0 when the id is taken (a retried submit).
pub(crate) static SUBMIT: Script = Script::new(concat!(
    lua_prelude!(),
    r#"
local id = ARGV[2]
local job = P .. ':job:' .. id
if redis.call('EXISTS', job) == 1 then return 0 end
local queued = '{"state":"queued"}'
redis.call('HSET', job, 'spec', ARGV[3], 'max_attempts', ARGV[4], 'attempt', 0,
  'state', queued, 'created_ms', ARGV[5])
local e = redis.call('XADD', Q, '*', 'id', id)
redis.call('HSET', job, 'entry', e)
redis.call('ZADD', P .. ':jobs', ARGV[5], id)
redis.call('HINCRBY', P .. ':stats', 'submitted', 1)
event(id, queued, 0, '', ARGV[6])
return 1
"#
));

/// A node starts an attempt of the job its entry names: ARGV id, node,
/// entry, events_maxlen. Fenced: only the entry's owner may. Returns
/// {'run', attempt, spec}, {'stop', attempt}, or {'skip'}.
pub(crate) static BEGIN: Script = Script::new(concat!(
    lua_prelude!(),
    r#"
local id, node, entry = ARGV[2], ARGV[3], ARGV[4]
local job = P .. ':job:' .. id
if owner(entry) ~= node then return {'skip'} end
if redis.call('EXISTS', job) == 0 or redis.call('HEXISTS', job, 'record') == 1 then
  retire(entry)
  return {'skip'}
end
if redis.call('HGET', job, 'stop') == '1' then
  redis.call('HSET', job, 'node', node, 'entry', entry)
  return {'stop', redis.call('HGET', job, 'attempt')}
end
local a = redis.call('HINCRBY', job, 'attempt', 1)
local init = '{"state":"initializing"}'
redis.call('HSET', job, 'node', node, 'entry', entry, 'state', init)
if a > 1 then redis.call('HINCRBY', P .. ':stats', 'reruns', 1) end
event(id, init, a, node, ARGV[5])
return {'run', a, redis.call('HGET', job, 'spec')}
"#
));

/// A state change of a running attempt: ARGV id, node, attempt, state,
/// events_maxlen. Fenced. Returns 1, or 0 when the attempt is no longer
/// the job's.
pub(crate) static STATE: Script = Script::new(concat!(
    lua_prelude!(),
    r#"
local id, node, a = ARGV[2], ARGV[3], ARGV[4]
local job = P .. ':job:' .. id
local h = redis.call('HMGET', job, 'node', 'attempt', 'record')
if h[1] ~= node or h[2] ~= a or h[3] then return 0 end
redis.call('HSET', job, 'state', ARGV[5])
event(id, ARGV[5], a, node, ARGV[6])
return 1
"#
));

/// The end of an attempt: ARGV id, node, attempt, entry, record, state,
/// files, events_maxlen, keep_ms. Writes the final record, the log's end
/// mark and the event, then acknowledges and deletes the queue entry, all
/// at once. Fenced. Returns 1 (written), 2 (written before: a retry) or 0
/// (the attempt is no longer the job's).
pub(crate) static FINISH: Script = Script::new(concat!(
    lua_prelude!(),
    r#"
local id, node, a, entry = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local job = P .. ':job:' .. id
local h = redis.call('HMGET', job, 'node', 'attempt', 'record')
if h[3] then
  if h[1] == node and h[2] == a then return 2 end
  return 0
end
if h[1] ~= node or h[2] ~= a or owner(entry) ~= node then return 0 end
redis.call('HSET', job, 'record', ARGV[6], 'state', ARGV[7], 'files', ARGV[8])
local log = P .. ':log:' .. id
redis.call('XADD', log, a .. '-*', 'end', a)
local keep = tonumber(ARGV[10])
if keep > 0 then
  redis.call('PEXPIRE', job, keep)
  redis.call('PEXPIRE', log, keep)
end
retire(entry)
redis.call('HINCRBY', P .. ':stats', 'finished', 1)
event(id, ARGV[7], a, node, ARGV[9])
return 1
"#
));

/// A node's heartbeat and lease renewal: ARGV node, ttl_ms, info, then
/// (id, attempt, entry) triples of its running attempts. Re-claims each
/// entry (resetting its idle time: the lease) and returns the ids of the
/// attempts that are no longer the job's (fenced out).
pub(crate) static RENEW: Script = Script::new(concat!(
    lua_prelude!(),
    r#"
local node = ARGV[2]
redis.call('SET', P .. ':node:' .. node, ARGV[4], 'PX', ARGV[3])
local t = redis.call('TIME')
redis.call('ZADD', P .. ':nodes', t[1] * 1000 + math.floor(t[2] / 1000), node)
local lost = {}
for i = 5, #ARGV, 3 do
  local id, a, entry = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local h = redis.call('HMGET', P .. ':job:' .. id, 'node', 'attempt')
  if h[1] == node and h[2] == a and owner(entry) == node then
    redis.call('XCLAIM', Q, 'nodes', node, 0, entry, 'JUSTID')
  else
    table.insert(lost, id)
  end
end
return lost
"#
));

/// Recovery: ARGV node, lease_ms, count, then the ids the node runs. Claims
/// (XAUTOCLAIM) the entries idle for a lease, gives back those whose owner
/// is alive, leaves those the node itself runs, and returns
/// {{'run', id, entry} | {'lost', id, entry, attempt}} for the rest (an
/// entry of this node that it no longer runs included).
pub(crate) static ADOPT: Script = Script::new(concat!(
    lua_prelude!(),
    r#"
local me = ARGV[2]
local mine = {}
for i = 5, #ARGV do mine[ARGV[i]] = true end
local r = redis.call('XAUTOCLAIM', Q, 'nodes', me, ARGV[3], '0-0', 'COUNT', ARGV[4], 'JUSTID')
local out = {}
for _, entry in ipairs(r[2]) do
  local f = redis.call('XRANGE', Q, entry, entry)
  local id = nil
  if f[1] then
    local kv = f[1][2]
    for i = 1, #kv, 2 do if kv[i] == 'id' then id = kv[i + 1] end end
  end
  local job = id and (P .. ':job:' .. id)
  if not id or redis.call('EXISTS', job) == 0 or redis.call('HEXISTS', job, 'record') == 1 then
    retire(entry)
  else
    local h = redis.call('HMGET', job, 'node', 'attempt', 'max_attempts')
    local prev = h[1]
    if prev and prev ~= '' and prev ~= me and redis.call('EXISTS', P .. ':node:' .. prev) == 1 then
      redis.call('XCLAIM', Q, 'nodes', prev, 0, entry, 'JUSTID')
    elseif not (prev == me and mine[id]) then
      if prev and prev ~= '' then redis.call('HINCRBY', P .. ':stats', 'claims', 1) end
      local a = tonumber(h[2] or '0')
      if prev and prev ~= '' and a >= tonumber(h[3] or '1') then
        redis.call('HSET', job, 'node', me, 'entry', entry)
        redis.call('HINCRBY', P .. ':stats', 'lost', 1)
        table.insert(out, {'lost', id, entry, a})
      else
        table.insert(out, {'run', id, entry})
      end
    end
  end
end
return out
"#
));

/// A stop request: ARGV id. Marks the job and tells the node that runs it.
/// Returns 1 (requested), 0 (no such job) or -1 (already finished).
pub(crate) static STOP: Script = Script::new(concat!(
    lua_prelude!(),
    r#"
local id = ARGV[2]
local job = P .. ':job:' .. id
if redis.call('EXISTS', job) == 0 then return 0 end
if redis.call('HEXISTS', job, 'record') == 1 then return -1 end
redis.call('HSET', job, 'stop', '1')
local node = redis.call('HGET', job, 'node')
if node and node ~= '' then
  local l = P .. ':stops:' .. node
  redis.call('RPUSH', l, id)
  redis.call('PEXPIRE', l, 86400000)
end
return 1
"#
));

/// Removes a finished job: ARGV id. Returns 1, 0 (no such job) or -1 (not finished).
pub(crate) static REMOVE: Script = Script::new(concat!(
    lua_prelude!(),
    r#"
local id = ARGV[2]
local job = P .. ':job:' .. id
if redis.call('EXISTS', job) == 0 then
  redis.call('ZREM', P .. ':jobs', id)
  return 0
end
if redis.call('HEXISTS', job, 'record') == 0 then return -1 end
redis.call('DEL', job, P .. ':log:' .. id)
redis.call('ZREM', P .. ':jobs', id)
return 1
"#
));
