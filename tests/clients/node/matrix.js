// The matrix scenario of tests/clients/README.md with one Node.js client library:
//
//   node matrix.js CLIENT BOOTSTRAP TOPIC GROUP
//
// CLIENT is `kafkajs` or `platformatic` (@platformatic/kafka), whichever version
// node_modules holds (setup.sh). The last stdout line is the report; diagnostics go to stderr.
//
// Each library sits behind one small adapter (admin calls, produce, a group member); the
// steps and the checks are shared. The two members of step 4 run at once in this process.
// They read until the group has settled: all 300 records read, both members own
// partitions, and each member has read each partition it owns to its end (the end offsets
// are listed after step 3). A member's position on a partition is the offset after the last
// record it read there (see MemberState for what a join does to it). Each member then commits
// its positions; once both have, both close. A failed library call stops the program with
// a non-zero exit; so does a step that does not finish in time (GROUP_MS), after printing
// the report of what it saw.

const FIRST_RECORDS = 300
const RESUMED_RECORDS = 50
const KEYS = 10
const PARTITIONS = 3
const ADMIN_PARTITIONS = 2
// Records per send of step 3 (several batches, so sequence numbers advance across requests).
const SEND_BATCH = 50
// Longest step 4 may take to read everything and settle the group.
const GROUP_MS = 60000
// Longest the fresh member of step 5 reads.
const RESUME_MS = 15000
// Members' heartbeat (how soon one notices a rebalance) and session timeout.
const HEARTBEAT_MS = 500
const SESSION_MS = 10000

class Failure extends Error {}

function log(message) {
  process.stderr.write(`matrix: ${message}\n`)
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

function record(i) {
  const key = `key-${i % KEYS}`
  return { key, value: `${key}:${i}` }
}

// The `i` of a record the scenario produced; a Failure for anything else.
function indexOf(key, value) {
  const k = key === null || key === undefined ? null : key.toString()
  const v = value === null || value === undefined ? '' : value.toString()
  const cut = v.lastIndexOf(':')
  const i = Number(v.slice(cut + 1))
  if (cut < 0 || !Number.isInteger(i) || v.slice(0, cut) !== k || k !== `key-${i % KEYS}` || i < 0 || i >= FIRST_RECORDS + RESUMED_RECORDS) {
    throw new Failure(`record not of the scenario: key ${JSON.stringify(k)} value ${JSON.stringify(v)}`)
  }
  return i
}

// Records read, deduplicated by (partition, offset).
class Records {
  constructor() {
    this.byPosition = new Map()
  }

  add(partition, offset, key, value) {
    const i = indexOf(key, value)
    const at = `${partition}:${offset}`
    const known = this.byPosition.get(at)
    if (known !== undefined && known !== i) {
      throw new Failure(`partition ${partition} offset ${offset} read as record ${known} and as record ${i}`)
    }
    this.byPosition.set(at, i)
  }

  get size() {
    return this.byPosition.size
  }
}

// Each key's records are in one partition, with `i` increasing with the offset.
function perKeyOrder(maps) {
  const byKey = new Map()
  for (const map of maps) {
    for (const [at, i] of map) {
      const [partition, offset] = at.split(':').map(Number)
      if (!byKey.has(i % KEYS)) byKey.set(i % KEYS, new Map())
      const partitions = byKey.get(i % KEYS)
      if (!partitions.has(partition)) partitions.set(partition, new Map())
      partitions.get(partition).set(offset, i)
    }
  }
  let ok = true
  for (const [key, partitions] of byKey) {
    if (partitions.size !== 1) {
      log(`key-${key} is in partitions ${[...partitions.keys()]}`)
      ok = false
      continue
    }
    const [[partition, offsets]] = partitions
    const indexes = [...offsets.entries()].sort((a, b) => a[0] - b[0]).map(([, i]) => i)
    if (indexes.some((i, n) => n > 0 && indexes[n - 1] >= i)) {
      log(`key-${key} in partition ${partition} out of order: ${indexes}`)
      ok = false
    }
  }
  return ok
}

// Two members owning disjoint, non-empty partition sets that cover every partition.
function splitOk(owned) {
  if (owned.length !== 2 || owned.some(o => o.size === 0)) return false
  const [a, b] = owned.map(o => [...o.keys()])
  const all = new Set([...a, ...b])
  return a.every(p => !b.includes(p)) && all.size === PARTITIONS && [...Array(PARTITIONS).keys()].every(p => all.has(p))
}

// Every member is at the end of every partition it owns.
function settled(owned, ends) {
  return owned.every(o => [...o].every(([p, position]) => position === (ends[p] ?? 0) || ((ends[p] ?? 0) === 0 && position < 0)))
}

// A group member's view, fed by its library's callbacks: what it owns since its last join
// and how far it has read each of those partitions. `rereads`: whether the library fetches
// from the committed offsets after every join (kafkajs), or goes on from where it was on
// the partitions it keeps (@platformatic/kafka keeps its fetch positions).
class MemberState {
  constructor(name, records, rereads) {
    this.name = name
    this.records = records
    this.rereads = rereads
    this.positions = new Map()
    this.read = new Map()
    this.error = null
  }

  joined(partitions) {
    log(`${this.name} joined with partitions [${partitions}]`)
    this.positions = new Map(partitions.map(p => [p, this.rereads ? -1 : (this.read.get(p) ?? -1)]))
  }

  rebalancing() {
    this.positions = new Map()
  }

  message(partition, offset, key, value) {
    this.records.add(partition, offset, key, value)
    this.read.set(partition, offset + 1)
    if (this.positions.has(partition)) this.positions.set(partition, offset + 1)
  }

  fail(error) {
    log(`${this.name}: ${error && error.stack ? error.stack : error}`)
    this.error = this.error || error
  }

  owned() {
    return new Map(this.positions)
  }
}

// ---------------------------------------------------------------------------------------
// The scenario, on an adapter.

async function scenario(adapter, topic, group) {
  const report = {
    client: adapter.client,
    listed: false,
    described: 0,
    admin: [],
    produced: 0,
    consumed: 0,
    per_key_order: false,
    split: false,
    resumed: 0,
  }
  const admin = api => {
    log(`admin call ${api} done`)
    report.admin.push(api)
  }

  // 1. All topics, then TOPIC alone.
  const listing = await adapter.listAll()
  log(`all-topics listing: ${JSON.stringify(Object.fromEntries(listing))}`)
  report.listed = listing.get(topic) === PARTITIONS
  admin('Metadata')
  report.described = await adapter.describe(topic)

  // 2. Admin calls.
  await adapter.adminCalls(`${topic}.admin`, group, admin)

  // 3. 300 keyed records, idempotent, acks=all.
  report.produced = await adapter.produce(0, FIRST_RECORDS)
  const ends = await adapter.endOffsets()
  log(`step 3: end offsets ${JSON.stringify(ends)}`)

  // 4. A group of two.
  const records = new Records()
  const members = [1, 2].map(n => adapter.member(new MemberState(`member-${n}`, records, adapter.rereads)))
  await Promise.all(members.map(m => m.start()))
  const deadline = Date.now() + GROUP_MS
  let timedOut = false
  for (;;) {
    const failed = members.find(m => m.state.error)
    if (failed) throw new Failure(`${failed.state.name}: ${failed.state.error}`)
    const owned = members.map(m => m.state.owned())
    if (records.size >= FIRST_RECORDS && splitOk(owned) && settled(owned, ends)) break
    if (Date.now() > deadline) {
      log(`group did not settle in ${GROUP_MS} ms: ${records.size} records, positions ${JSON.stringify(owned.map(o => Object.fromEntries(o)))}`)
      timedOut = true
      break
    }
    await sleep(50)
  }
  const finals = members.map(m => m.state.owned())
  await Promise.all(members.map((m, n) => m.commit(finals[n])))
  await Promise.all(members.map(m => m.close()))
  report.consumed = records.size
  report.split = splitOk(finals)
  report.owned = finals.map(o => [...o.keys()].sort())

  // 5. 50 more, then a fresh member.
  const more = await adapter.produce(FIRST_RECORDS, RESUMED_RECORDS)
  if (more !== RESUMED_RECORDS) throw new Failure(`${more} of ${RESUMED_RECORDS} records acknowledged in step 5`)
  const read = new Records()
  const fresh = adapter.member(new MemberState('fresh member', read, adapter.rereads))
  await fresh.start()
  const resumeDeadline = Date.now() + RESUME_MS
  while (read.size < RESUMED_RECORDS && Date.now() < resumeDeadline && !fresh.state.error) {
    await sleep(20)
  }
  await fresh.close()
  if (fresh.state.error) throw new Failure(`fresh member: ${fresh.state.error}`)
  const old = [...read.byPosition.values()].filter(i => i < FIRST_RECORDS)
  if (old.length) log(`the fresh member read ${old.length} records of the first ${FIRST_RECORDS}`)
  report.resumed = old.length ? 0 : new Set(read.byPosition.values()).size
  report.per_key_order = perKeyOrder([records.byPosition, read.byPosition])
  await adapter.close()
  return { report, timedOut }
}

// ---------------------------------------------------------------------------------------
// kafkajs

async function kafkajs(bootstrap, topic, group) {
  const { Kafka, logLevel, ConfigResourceTypes, Partitioners } = require('kafkajs')
  const version = require('kafkajs/package.json').version
  const logCreator = () => ({ namespace, level, log: entry }) => {
    const { message, ...rest } = entry
    process.stderr.write(`kafkajs ${namespace} [${level}] ${message} ${JSON.stringify(rest)}\n`)
  }
  const kafka = new Kafka({ clientId: 'fjord-matrix', brokers: [bootstrap], logLevel: logLevel.WARN, logCreator })
  const admin = kafka.admin()
  await admin.connect()
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: Partitioners.DefaultPartitioner })
  let producerConnected = false

  return {
    client: `kafkajs ${version}`,
    rereads: true,

    async listAll() {
      const names = await admin.listTopics()
      const { topics } = await admin.fetchTopicMetadata()
      return new Map(topics.filter(t => names.includes(t.name)).map(t => [t.name, t.partitions.length]))
    },

    async describe(name) {
      const { topics } = await admin.fetchTopicMetadata({ topics: [name] })
      const found = topics.find(t => t.name === name)
      if (!found) throw new Failure(`fetchTopicMetadata([${name}]) did not return it`)
      return found.partitions.length
    },

    async adminCalls(extra, groupId, done) {
      const created = await admin.createTopics({ topics: [{ topic: extra, numPartitions: ADMIN_PARTITIONS, replicationFactor: 1 }], waitForLeaders: true })
      if (!created) throw new Failure(`createTopics(${extra}) created nothing`)
      done('CreateTopics')
      const { resources } = await admin.describeConfigs({ resources: [{ type: ConfigResourceTypes.TOPIC, name: extra }], includeSynonyms: false })
      if (resources.length !== 1 || resources[0].errorCode !== 0 || !resources[0].configEntries.length) {
        throw new Failure(`describeConfigs(${extra}): ${JSON.stringify(resources)}`)
      }
      log(`${extra} has ${resources[0].configEntries.length} configs`)
      done('DescribeConfigs')
      await admin.deleteTopics({ topics: [extra] })
      done('DeleteTopics')
      await admin.listGroups()
      done('ListGroups')
      const { groups } = await admin.describeGroups([groupId])
      log(`group ${groupId} before step 4: ${groups.map(g => g.state)}`)
      done('DescribeGroups')
      const offsets = await admin.fetchTopicOffsets(topic)
      log(`end offsets before step 3: ${JSON.stringify(offsets.map(o => [o.partition, o.high]))}`)
      done('ListOffsets')
      await admin.fetchOffsets({ groupId, topics: [topic] })
      done('OffsetFetch')
    },

    async produce(first, count) {
      if (!producerConnected) {
        await producer.connect()
        producerConnected = true
      }
      let acknowledged = 0
      for (let start = first; start < first + count; start += SEND_BATCH) {
        const messages = []
        for (let i = start; i < Math.min(start + SEND_BATCH, first + count); i++) messages.push(record(i))
        const results = await producer.send({ topic, acks: -1, messages })
        const failed = results.filter(r => r.errorCode !== 0)
        if (failed.length) throw new Failure(`send failed: ${JSON.stringify(failed)}`)
        acknowledged += messages.length
      }
      return acknowledged
    },

    async endOffsets() {
      const offsets = await admin.fetchTopicOffsets(topic)
      return Object.fromEntries(offsets.map(o => [o.partition, Number(o.high)]))
    },

    member(state) {
      const consumer = kafka.consumer({ groupId: group, sessionTimeout: SESSION_MS, heartbeatInterval: HEARTBEAT_MS, maxWaitTimeInMs: 500 })
      consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => state.joined(payload.memberAssignment[topic] || []))
      consumer.on(consumer.events.REBALANCING, () => state.rebalancing())
      consumer.on(consumer.events.CRASH, ({ payload }) => state.fail(payload.error))
      return {
        state,
        async start() {
          await consumer.connect()
          await consumer.subscribe({ topics: [topic], fromBeginning: true })
          await consumer.run({
            autoCommit: false,
            eachMessage: async ({ partition, message }) => {
              try {
                state.message(partition, Number(message.offset), message.key, message.value)
              } catch (error) {
                state.fail(error)
              }
            },
          })
        },
        async commit(positions) {
          const offsets = [...positions].filter(([, o]) => o >= 0).map(([partition, o]) => ({ topic, partition, offset: String(o) }))
          if (offsets.length) await consumer.commitOffsets(offsets)
          log(`${state.name} committed ${JSON.stringify(offsets.map(o => [o.partition, Number(o.offset)]))}`)
        },
        async close() {
          await consumer.disconnect()
        },
      }
    },

    async close() {
      await producer.disconnect()
      await admin.disconnect()
    },
  }
}

// ---------------------------------------------------------------------------------------
// @platformatic/kafka

async function platformatic(bootstrap, topic, group) {
  const kafka = await import('@platformatic/kafka')
  const { Admin, Producer, Consumer, ProduceAcks, ConfigResourceTypes, ListOffsetTimestamps, MessagesStreamModes, MessagesStreamFallbackModes } = kafka
  // The package exports no ./package.json: read it next to the entry point (dist/index.js).
  const path = require('path')
  const manifest = path.join(path.dirname(require.resolve('@platformatic/kafka')), '..', 'package.json')
  const { version } = JSON.parse(require('fs').readFileSync(manifest, 'utf8'))
  const base = { clientId: 'fjord-matrix', bootstrapBrokers: [bootstrap] }
  const admin = new Admin(base)
  const producer = new Producer({ ...base, idempotent: true, acks: ProduceAcks.ALL })

  return {
    client: `@platformatic/kafka ${version}`,
    rereads: false,

    async listAll() {
      const names = await admin.listTopics({ includeInternals: true })
      const metadata = await admin.metadata({ topics: names, forceUpdate: true })
      return new Map(names.map(name => [name, metadata.topics.get(name)?.partitionsCount]))
    },

    async describe(name) {
      const metadata = await admin.metadata({ topics: [name], forceUpdate: true })
      const found = metadata.topics.get(name)
      if (!found) throw new Failure(`metadata([${name}]) did not return it`)
      return found.partitionsCount
    },

    async adminCalls(extra, groupId, done) {
      await admin.createTopics({ topics: [extra], partitions: ADMIN_PARTITIONS, replicas: 1 })
      done('CreateTopics')
      const configs = await admin.describeConfigs({ resources: [{ resourceType: ConfigResourceTypes.TOPIC, resourceName: extra }] })
      if (configs.length !== 1 || !configs[0].configs.length) throw new Failure(`describeConfigs(${extra}): ${JSON.stringify(configs)}`)
      log(`${extra} has ${configs[0].configs.length} configs`)
      done('DescribeConfigs')
      await admin.deleteTopics({ topics: [extra] })
      done('DeleteTopics')
      await admin.listGroups()
      done('ListGroups')
      const groups = await admin.describeGroups({ groups: [groupId] })
      log(`group ${groupId} before step 4: ${[...groups.values()].map(g => g.state)}`)
      done('DescribeGroups')
      const offsets = await admin.listOffsets({
        topics: [{ name: topic, partitions: [...Array(PARTITIONS).keys()].map(p => ({ partitionIndex: p, timestamp: ListOffsetTimestamps.LATEST })) }],
      })
      log(`end offsets before step 3: ${JSON.stringify(offsets[0].partitions.map(p => [p.partitionIndex, Number(p.offset)]))}`)
      done('ListOffsets')
      await admin.listConsumerGroupOffsets({ groups: [groupId] })
      done('OffsetFetch')
    },

    async produce(first, count) {
      let acknowledged = 0
      for (let start = first; start < first + count; start += SEND_BATCH) {
        const messages = []
        for (let i = start; i < Math.min(start + SEND_BATCH, first + count); i++) {
          const { key, value } = record(i)
          messages.push({ topic, key: Buffer.from(key), value: Buffer.from(value) })
        }
        const result = await producer.send({ messages, acks: ProduceAcks.ALL })
        if (!result.offsets || !result.offsets.length) throw new Failure(`send returned no offsets: ${JSON.stringify(result)}`)
        acknowledged += messages.length
      }
      return acknowledged
    },

    async endOffsets() {
      const offsets = await admin.listOffsets({
        topics: [{ name: topic, partitions: [...Array(PARTITIONS).keys()].map(p => ({ partitionIndex: p, timestamp: ListOffsetTimestamps.LATEST })) }],
      })
      return Object.fromEntries(offsets[0].partitions.map(p => [p.partitionIndex, Number(p.offset)]))
    },

    member(state) {
      const consumer = new Consumer({ ...base, groupId: group, sessionTimeout: SESSION_MS, heartbeatInterval: HEARTBEAT_MS, maxWaitTime: 500 })
      const last = new Map()
      let stream = null
      consumer.on('consumer:group:join', payload => {
        const mine = (payload.assignments || []).find(a => a.topic === topic)
        state.joined(mine ? [...mine.partitions] : [])
      })
      consumer.on('consumer:group:rebalance', () => state.rebalancing())
      return {
        state,
        async start() {
          stream = await consumer.consume({
            topics: [topic],
            mode: MessagesStreamModes.COMMITTED,
            fallbackMode: MessagesStreamFallbackModes.EARLIEST,
            autocommit: false,
          })
          stream.on('data', message => {
            try {
              state.message(message.partition, Number(message.offset), message.key, message.value)
              last.set(message.partition, message)
            } catch (error) {
              state.fail(error)
            }
          })
          stream.on('error', error => state.fail(error))
        },
        async commit(positions) {
          // A message's commit() commits the offset after it: the member's position.
          const done = []
          for (const [partition, position] of positions) {
            const message = last.get(partition)
            if (position < 0 || !message) continue
            if (Number(message.offset) + 1 !== position) throw new Failure(`${state.name}: last message of ${partition} is at ${message.offset}, position ${position}`)
            await message.commit()
            done.push([partition, position])
          }
          log(`${state.name} committed ${JSON.stringify(done)}`)
        },
        async close() {
          if (stream) await stream.close()
          await consumer.close()
        },
      }
    },

    async close() {
      await producer.close()
      await admin.close()
    },
  }
}

const CLIENTS = { kafkajs, platformatic }

async function main() {
  const [client, bootstrap, topic, group] = process.argv.slice(2)
  if (!CLIENTS[client] || !group) {
    process.stderr.write(`usage: node matrix.js ${Object.keys(CLIENTS).join('|')} BOOTSTRAP TOPIC GROUP\n`)
    process.exit(2)
  }
  const started = Date.now()
  const adapter = await CLIENTS[client](bootstrap, topic, group)
  const { report, timedOut } = await scenario(adapter, topic, group)
  log(`done in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  process.stdout.write(`${JSON.stringify(report)}\n`)
  process.exit(timedOut ? 1 : 0)
}

main().catch(error => {
  // The libraries' errors carry details in their own fields (@platformatic/kafka's
  // UnsupportedApiError: the broker's minVersion and maxVersion of the API).
  const fields = error && typeof error === 'object' ? Object.entries(error).filter(([k]) => k !== 'stack' && k !== 'message') : []
  const details = fields.length ? `\n  ${JSON.stringify(Object.fromEntries(fields), (_, v) => (typeof v === 'bigint' ? String(v) : v))}` : ''
  log(`failed: ${error && error.stack ? error.stack : error}${details}`)
  process.exit(1)
})
