import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The Java producer against a compacted topic, for tests/compaction.rs; the same scenario
 * as tests/clients/python/compaction.py.
 *
 * <pre>CompactedUpdates BOOTSTRAP TOPIC UPDATES KEYS DEADLINE_S</pre>
 *
 * Creates TOPIC (one partition, cleanup.policy=compact, segments rolled every 200 ms, a
 * dirty ratio of 1%), produces UPDATES records over KEYS keys, key {@code key-(i % KEYS)}
 * with value {@code value-i}, the last update of every tenth key a tombstone (a null
 * value), then reads the topic from the beginning until the cleaner has left each key at
 * most one record, or DEADLINE_S seconds passed. Prints, tab-separated:
 *
 * <pre>
 * produced UPDATES
 * live N dead M
 * read RECORDS DISTINCT_KEYS     each read from the beginning, until one is clean
 * clean
 * </pre>
 *
 * and exits non-zero, with the reason, if a read after the deadline still fails the check.
 */
public final class CompactedUpdates {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = args[1];
        int updates = Integer.parseInt(args[2]);
        int keys = Integer.parseInt(args[3]);
        double deadlineS = Double.parseDouble(args[4]);

        Properties adminProps = new Properties();
        adminProps.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(adminProps)) {
            Map<String, String> configs = Map.of(
                "cleanup.policy", "compact",
                "segment.ms", "200",
                "min.cleanable.dirty.ratio", "0.01",
                "delete.retention.ms", "0");
            NewTopic newTopic = new NewTopic(topic, 1, (short) 1).configs(configs);
            admin.createTopics(List.of(newTopic)).all().get(30, TimeUnit.SECONDS);
        }

        Properties producerProps = new Properties();
        producerProps.put("bootstrap.servers", bootstrap);
        producerProps.put("acks", "all");
        producerProps.put("linger.ms", "5");
        producerProps.put("key.serializer", StringSerializer.class.getName());
        producerProps.put("value.serializer", StringSerializer.class.getName());
        Map<String, String> model = new HashMap<>();
        AtomicReference<Exception> failed = new AtomicReference<>();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps)) {
            for (int i = 0; i < updates; i++) {
                String key = "key-" + (i % keys);
                boolean lastRound = i >= updates - keys;
                String value = lastRound && (i % keys) % 10 == 0 ? null : "value-" + i;
                producer.send(new ProducerRecord<>(topic, key, value), (metadata, error) -> {
                    if (error != null) {
                        failed.compareAndSet(null, error);
                    }
                });
                model.put(key, value);
            }
            producer.flush();
        }
        if (failed.get() != null) {
            fail("a delivery failed: " + failed.get());
        }
        emit("produced", updates);
        long live = model.values().stream().filter(v -> v != null).count();
        emit("live", live, "dead", model.size() - live);

        long end = System.nanoTime() + (long) (deadlineS * 1e9);
        while (true) {
            List<String[]> records = readAll(bootstrap, topic);
            Map<String, List<String>> seen = new HashMap<>();
            for (String[] record : records) {
                seen.computeIfAbsent(record[0], k -> new ArrayList<>()).add(record[1]);
            }
            emit("read", records.size(), seen.size());
            List<String> problems = new ArrayList<>();
            for (Map.Entry<String, List<String>> entry : seen.entrySet()) {
                String key = entry.getKey();
                List<String> values = entry.getValue();
                if (values.size() > 1) {
                    problems.add(key + " " + values.size() + " times");
                } else if (!model.containsKey(key)) {
                    problems.add(key + " was never produced");
                } else if (!java.util.Objects.equals(values.get(0), model.get(key))) {
                    problems.add(key + " holds " + values.get(0) + ", its last update was " + model.get(key));
                }
            }
            for (Map.Entry<String, String> entry : model.entrySet()) {
                if (entry.getValue() != null && !seen.containsKey(entry.getKey())) {
                    problems.add("live key " + entry.getKey() + " is gone");
                }
            }
            if (problems.isEmpty()) {
                emit("clean");
                return;
            }
            if (System.nanoTime() > end) {
                fail("not clean after " + deadlineS + " s: "
                    + String.join("; ", problems.subList(0, Math.min(5, problems.size()))));
            }
            Thread.sleep(500);
        }
    }

    /** Every record of partition 0 from the beginning to the end offset, as (key, value). */
    static List<String[]> readAll(String bootstrap, String topic) throws ExecutionException {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("enable.auto.commit", "false");
        props.put("key.deserializer", StringDeserializer.class.getName());
        props.put("value.deserializer", StringDeserializer.class.getName());
        List<String[]> records = new ArrayList<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
            TopicPartition partition = new TopicPartition(topic, 0);
            consumer.assign(List.of(partition));
            consumer.seekToBeginning(List.of(partition));
            long endOffset = consumer.endOffsets(List.of(partition)).get(partition);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (consumer.position(partition) < endOffset) {
                if (System.nanoTime() > deadline) {
                    fail("did not reach the end offset " + endOffset + " within 30 s");
                }
                for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(500))) {
                    records.add(new String[] {record.key(), record.value()});
                }
            }
        }
        return Collections.unmodifiableList(records);
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
