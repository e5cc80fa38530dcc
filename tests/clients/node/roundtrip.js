// kafkajs against a real fjord broker: admin (create/list topics), an idempotent producer with
// acks=all and keys, a group consumer reading every message, and the group's committed
// offsets. Prints one JSON line with what it saw; the Rust test checks it.
const { Kafka, logLevel } = require('kafkajs')

const [broker, topic, group] = process.argv.slice(2)
const kafka = new Kafka({ clientId: 'fjord-kafkajs-test', brokers: [broker], logLevel: logLevel.ERROR })
const MESSAGES = 1000

async function main() {
  const admin = kafka.admin()
  await admin.connect()
  await admin.createTopics({ topics: [{ topic, numPartitions: 3 }] })
  const listed = await admin.listTopics()
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 })
  await producer.connect()
  for (let batch = 0; batch < MESSAGES / 100; batch++) {
    await producer.send({
      topic,
      acks: -1,
      messages: Array.from({ length: 100 }, (_, j) => ({ key: `k${j % 7}`, value: `${batch * 100 + j}` })),
    })
  }
  await producer.disconnect()
  const consumer = kafka.consumer({ groupId: group, sessionTimeout: 10000 })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  const seen = []
  const perKey = {}
  let ordered = true
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${seen.length} messages`)), 60000)
    consumer.run({
      eachMessage: async ({ message }) => {
        const key = message.key.toString()
        const value = Number(message.value.toString())
        if (perKey[key] !== undefined && perKey[key] >= value) ordered = false
        perKey[key] = value
        seen.push(value)
        if (seen.length >= MESSAGES) {
          clearTimeout(timer)
          resolve()
        }
      },
    })
  })
  await consumer.disconnect()
  const offsets = await admin.fetchOffsets({ groupId: group, topics: [topic] })
  await admin.disconnect()
  const committed = offsets[0].partitions.reduce((sum, p) => sum + Number(p.offset), 0)
  console.log(JSON.stringify({ listed: listed.includes(topic), count: seen.length, unique: new Set(seen).size, ordered, committed }))
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error('kafkajs round trip failed:', error)
    process.exit(1)
  },
)
