import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.InvalidProducerEpochException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Transactions through the Java client, for tests/transactions.rs; the commit-abort and
 * fenced scenarios of tests/clients/python/transactions.py.
 *
 * <pre>Transactions commit-abort|fenced BOOTSTRAP PREFIX</pre>
 *
 * <ul>
 * <li>{@code commit-abort}: creates PREFIX-a (3 partitions) and PREFIX-b (2); one
 * transactional producer commits 10 records to every partition ("c1-..."), aborts 10 more
 * ("a2-..."), commits 5 more ("c3-..."). A read_committed consumer reads exactly the 15
 * committed records of each partition, in order; a read_uncommitted one all 25. Prints
 * {@code epoch E} (the producer's epoch after the three transactions, from
 * describeTransactions), {@code committed 75} and {@code uncommitted 125}.
 * <li>{@code fenced}: two producers with one transactional.id: the second's
 * initTransactions fences the first, whose commit then fails. Prints
 * {@code fenced <exception's simple class name>}, then {@code p2 committed} once the second
 * producer has committed a transaction of its own, read back with read_committed.
 * </ul>
 *
 * Output lines are tab-separated; any failed expectation exits non-zero with the reason.
 */
public final class Transactions {
    /** Bound of each wait on the broker, in seconds. */
    static final int TIMEOUT_S = 30;
    /** How long a read to the end of the topics may take, in seconds. */
    static final int READ_DEADLINE_S = 60;

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            fail("usage: Transactions commit-abort|fenced BOOTSTRAP PREFIX");
        }
        String bootstrap = args[1];
        String prefix = args[2];
        switch (args[0]) {
            case "commit-abort" -> commitAbort(bootstrap, prefix);
            case "fenced" -> fenced(bootstrap, prefix);
            default -> fail("unknown scenario " + args[0]);
        }
    }

    static void commitAbort(String bootstrap, String prefix) throws Exception {
        Map<String, Integer> topics = Map.of(prefix + "-a", 3, prefix + "-b", 2);
        createTopics(bootstrap, topics);
        List<TopicPartition> partitions = new ArrayList<>();
        for (String topic : List.of(prefix + "-a", prefix + "-b")) {
            for (int p = 0; p < topics.get(topic); p++) {
                partitions.add(new TopicPartition(topic, p));
            }
        }
        try (KafkaProducer<String, String> producer =
                transactionalProducer(bootstrap, prefix + "-tx")) {
            producer.initTransactions();
            producer.beginTransaction();
            produceAll(producer, partitions, 10, "c1");
            producer.commitTransaction();
            producer.beginTransaction();
            produceAll(producer, partitions, 10, "a2");
            producer.abortTransaction();
            producer.beginTransaction();
            produceAll(producer, partitions, 5, "c3");
            producer.commitTransaction();
        }
        // With transactions v2 (KIP-890 part 2) every end bumps the epoch: 0 after
        // initTransactions, 3 after three transactions (0 with transactions v1).
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(props)) {
            var description = admin.describeTransactions(List.of(prefix + "-tx"))
                .description(prefix + "-tx").get(TIMEOUT_S, TimeUnit.SECONDS);
            emit("epoch", description.producerEpoch());
        }
        check(bootstrap, partitions, "read_committed", Map.of("c1", 10, "c3", 5), "committed");
        check(bootstrap, partitions, "read_uncommitted", Map.of("c1", 10, "a2", 10, "c3", 5),
            "uncommitted");
    }

    /** Reads `partitions` with `isolation` and checks each holds the records of `prefixes`
     * (in the order c1, a2, c3), then prints `tag TOTAL`. */
    static void check(String bootstrap, List<TopicPartition> partitions, String isolation,
            Map<String, Integer> prefixes, String tag) {
        Map<TopicPartition, List<String>> records = readToEnd(bootstrap, partitions, isolation);
        int total = 0;
        for (TopicPartition tp : partitions) {
            List<String> want = new ArrayList<>();
            for (String p : List.of("c1", "a2", "c3")) {
                for (int i = 0; i < prefixes.getOrDefault(p, 0); i++) {
                    want.add(value(p, tp, i));
                }
            }
            List<String> got = records.get(tp);
            if (!got.equals(want)) {
                fail(isolation + " " + tp + ": got " + got.size() + " records "
                    + got.subList(0, Math.min(3, got.size())) + "..., expected " + want.size()
                    + " " + want.subList(0, Math.min(3, want.size())) + "...");
            }
            total += got.size();
        }
        emit(tag, total);
    }

    static void fenced(String bootstrap, String prefix) throws Exception {
        String topic = prefix + "-f";
        createTopics(bootstrap, Map.of(topic, 1));
        String txid = prefix + "-tx";
        KafkaProducer<String, String> p1 = transactionalProducer(bootstrap, txid);
        p1.initTransactions();
        p1.beginTransaction();
        p1.send(new ProducerRecord<>(topic, 0, null, "p1-0")).get(TIMEOUT_S, TimeUnit.SECONDS);
        p1.flush();
        try (KafkaProducer<String, String> p2 = transactionalProducer(bootstrap, txid)) {
            p2.initTransactions();
            // Straight to EndTxn: the coordinator refuses p1's old epoch (a send first would
            // fail with the abortable InvalidProducerEpochException of the partition leader).
            Exception error = null;
            try {
                p1.commitTransaction();
            } catch (Exception e) {
                error = e;
            }
            Throwable cause = error;
            while (cause != null && !(cause instanceof ProducerFencedException)
                    && !(cause instanceof InvalidProducerEpochException)) {
                cause = cause.getCause();
            }
            if (cause == null) {
                fail("p1's commit after p2's initTransactions: " + error + ", expected it fenced");
            }
            emit("fenced", cause.getClass().getSimpleName());
            p1.close(Duration.ZERO);
            p2.beginTransaction();
            p2.send(new ProducerRecord<>(topic, 0, null, "p2-0"));
            p2.commitTransaction();
        }
        TopicPartition tp = new TopicPartition(topic, 0);
        List<String> records = readToEnd(bootstrap, List.of(tp), "read_committed").get(tp);
        if (!records.equals(List.of("p2-0"))) {
            fail("read_committed after the fencing: " + records + ", expected [p2-0]");
        }
        emit("p2", "committed");
    }

    static void createTopics(String bootstrap, Map<String, Integer> topics) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(props)) {
            List<NewTopic> newTopics = new ArrayList<>();
            topics.forEach((name, n) -> newTopics.add(new NewTopic(name, n, (short) 1)));
            admin.createTopics(newTopics).all().get(TIMEOUT_S, TimeUnit.SECONDS);
        }
    }

    static KafkaProducer<String, String> transactionalProducer(String bootstrap, String txid) {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("transactional.id", txid);
        props.put("max.block.ms", String.valueOf(TIMEOUT_S * 1000));
        props.put("key.serializer", StringSerializer.class.getName());
        props.put("value.serializer", StringSerializer.class.getName());
        return new KafkaProducer<>(props);
    }

    static String value(String prefix, TopicPartition tp, int i) {
        return prefix + "-" + tp.topic() + "-" + tp.partition() + "-" + i;
    }

    /** `count` records to each partition, then a flush; fails on a failed delivery. */
    static void produceAll(KafkaProducer<String, String> producer, List<TopicPartition> partitions,
            int count, String prefix) {
        List<Exception> failures = new ArrayList<>();
        for (TopicPartition tp : partitions) {
            for (int i = 0; i < count; i++) {
                String value = value(prefix, tp, i);
                producer.send(new ProducerRecord<>(tp.topic(), tp.partition(), null, value),
                    (metadata, error) -> {
                        if (error != null) {
                            synchronized (failures) {
                                failures.add(error);
                            }
                        }
                    });
            }
        }
        producer.flush();
        synchronized (failures) {
            if (!failures.isEmpty()) {
                fail(prefix + ": deliveries failed: " + failures.get(0));
            }
        }
    }

    /**
     * Every record of `partitions` from the beginning, read until the consumer's position
     * reaches each partition's high watermark (the end offset of a read_uncommitted
     * consumer): with read_committed that needs every transaction below it decided.
     */
    static Map<TopicPartition, List<String>> readToEnd(String bootstrap,
            List<TopicPartition> partitions, String isolation) {
        Map<TopicPartition, Long> ends;
        try (KafkaConsumer<String, String> probe = consumer(bootstrap, "read_uncommitted")) {
            ends = probe.endOffsets(partitions, Duration.ofSeconds(TIMEOUT_S));
        }
        Map<TopicPartition, List<String>> records = new HashMap<>();
        for (TopicPartition tp : partitions) {
            records.put(tp, new ArrayList<>());
        }
        try (KafkaConsumer<String, String> consumer = consumer(bootstrap, isolation)) {
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(READ_DEADLINE_S);
            while (true) {
                List<String> behind = new ArrayList<>();
                for (TopicPartition tp : partitions) {
                    long position = consumer.position(tp, Duration.ofSeconds(TIMEOUT_S));
                    if (position < ends.get(tp)) {
                        behind.add(tp + " at " + position + " of " + ends.get(tp));
                    }
                }
                if (behind.isEmpty()) {
                    return records;
                }
                if (System.nanoTime() > deadline) {
                    fail(isolation + ": positions behind the high watermarks after "
                        + READ_DEADLINE_S + " s: " + behind);
                }
                ConsumerRecords<String, String> polled = consumer.poll(Duration.ofMillis(500));
                for (ConsumerRecord<String, String> record : polled) {
                    TopicPartition tp = new TopicPartition(record.topic(), record.partition());
                    records.get(tp).add(record.value());
                }
            }
        }
    }

    static KafkaConsumer<String, String> consumer(String bootstrap, String isolation) {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("enable.auto.commit", "false");
        props.put("isolation.level", isolation);
        props.put("key.deserializer", StringDeserializer.class.getName());
        props.put("value.deserializer", StringDeserializer.class.getName());
        return new KafkaConsumer<>(props);
    }

    static void emit(Object... fields) {
        StringBuilder line = new StringBuilder();
        for (Object field : fields) {
            if (line.length() > 0) {
                line.append('\t');
            }
            line.append(field);
        }
        System.out.println(line);
        System.out.flush();
    }

    static void fail(String message) {
        System.out.flush();
        System.err.println("error: " + message);
        System.exit(1);
    }
}
