// The matrix scenario of tests/clients/README.md with Apache Kafka's Java client
// (org.apache.kafka:kafka-clients): AdminClient, an idempotent KafkaProducer, and a group of
// two KafkaConsumers in two threads, then a fresh member of the same group.
//
//     java -cp ... Matrix BOOTSTRAP TOPIC GROUP
//
// Diagnostics go to stderr; the last stdout line is the JSON report. A call that fails (an
// exception from the client, or an admin answer that contradicts what the scenario just
// did) makes the program exit 1; what the records show is left to the report.
//
// The admin step also changes its topic before deleting it (so far only this client does):
// IncrementalAlterConfigs, CreatePartitions, and DeleteRecords on a few records it writes to
// partition 0, each checked through DescribeConfigs, describeTopics, ListOffsets and a fetch.
//
// The group admin calls (ListGroups, DescribeGroups while both members are in the group;
// OffsetFetch and ListOffsets after they commit) come during and after step 4, when there is
// a group to see. Only APIs present in both kafka-clients 3.9 and 4.4 are used (setup.sh
// compiles this file against each).

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.CreateTopicsResult;
import org.apache.kafka.clients.admin.DeletedRecords;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetOutOfRangeException;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.errors.InvalidPartitionsException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class Matrix {
    /** Partitions of the scenario's topic (the test creates it). */
    static final int PARTITIONS = 3;
    /** Partitions of the topic the admin step creates and deletes. */
    static final int ADMIN_PARTITIONS = 2;
    static final String RETENTION_MS = "retention.ms";
    static final String MAX_MESSAGE_BYTES = "max.message.bytes";
    /** Values the admin step sets on its topic: neither is a default, so a describe tells them apart. */
    static final long RETENTION_MS_SET = 123_456_789L;
    static final int MAX_MESSAGE_BYTES_SET = 654_321;
    /** Records the admin step writes to partition 0 of its topic, and the offset it deletes them before. */
    static final int ADMIN_RECORDS = 5;
    static final int DELETE_BEFORE = 3;
    static final int KEYS = 10;
    static final int FIRST_RECORDS = 300;
    static final int RESUMED_RECORDS = 50;
    /** Longest the group of two may take to read the first records and split the partitions. */
    static final long GROUP_MS_MAX = 90_000;
    /** How long the fresh member of step 5 reads at most (the README's 15 s). */
    static final long RESUME_MS_MAX = 15_000;
    /** Bound on each blocking client call, so a broker that does not answer fails the run. */
    static final int CALL_MS_MAX = 30_000;
    static final Duration POLL = Duration.ofMillis(100);

    final String bootstrap;
    final String topic;
    final String group;
    final List<String> admin = new ArrayList<>();

    Matrix(String bootstrap, String topic, String group) {
        this.bootstrap = bootstrap;
        this.topic = topic;
        this.group = group;
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: Matrix BOOTSTRAP TOPIC GROUP");
            System.exit(2);
        }
        try {
            new Matrix(args[0], args[1], args[2]).run();
        } catch (Throwable e) {
            System.err.println("matrix: failed: " + e);
            e.printStackTrace();
            System.exit(1);
        }
        // Client threads (a consumer's heartbeat thread that failed to stop) must not keep
        // the JVM alive once the report is out.
        System.exit(0);
    }

    static void log(String message) {
        System.err.println("matrix: " + message);
    }

    /** Something the broker answered that contradicts the scenario: the program fails. */
    static final class Mismatch extends RuntimeException {
        Mismatch(String message) {
            super(message);
        }
    }

    static String key(int i) {
        return "key-" + (i % KEYS);
    }

    static String value(int i) {
        return key(i) + ":" + i;
    }

    /** One record read, by its place in the log. */
    record Read(int partition, long offset, String key, int i) {}

    /** `i` of a record this program produced; fails on anything else. */
    static int index(ConsumerRecord<String, String> record) {
        String value = record.value();
        int colon = value == null ? -1 : value.lastIndexOf(':');
        if (colon < 0) {
            throw new Mismatch("record at " + record.partition() + "/" + record.offset() + " has value " + value);
        }
        int i = Integer.parseInt(value.substring(colon + 1));
        if (!value.equals(value(i)) || !key(i).equals(record.key())) {
            throw new Mismatch("record at " + record.partition() + "/" + record.offset() + " has key "
                    + record.key() + " and value " + value);
        }
        return i;
    }

    Properties common(String clientId) {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.CLIENT_ID_CONFIG, clientId);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, CALL_MS_MAX / 2);
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, CALL_MS_MAX);
        return props;
    }

    Properties consumerProps(String clientId, boolean inGroup) {
        Properties props = common(clientId);
        if (inGroup) {
            props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        }
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        return props;
    }

    void run() throws Exception {
        String client = "kafka-clients " + clientVersion();
        log(client + " against " + bootstrap + ", topic " + topic + ", group " + group);
        boolean listed;
        int described;
        int produced;
        GroupResult first;
        int resumed;
        try (Admin adminClient = Admin.create(common(group + "-admin"))) {
            // 1. List all topics, then describe the topic alone.
            listed = listTopics(adminClient);
            described = describeTopic(adminClient);
            // 2. Admin calls on a topic of their own.
            adminCalls(adminClient);

            Properties producerProps = common(group + "-producer");
            producerProps.put(ProducerConfig.ACKS_CONFIG, "all");
            producerProps.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
            producerProps.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, CALL_MS_MAX);
            producerProps.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, CALL_MS_MAX);
            producerProps.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            producerProps.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps)) {
                // 3. 300 keyed records, acks=all, idempotent.
                produced = produce(producer, 0, FIRST_RECORDS);
                // 4. A group of two reads them all, splits the partitions, commits, closes.
                first = consumeAsGroup(adminClient);
                committedAndListedOffsets(adminClient);
                // 5. 50 more, read by a fresh member from the group's commits.
                produce(producer, FIRST_RECORDS, RESUMED_RECORDS);
            }
            resumed = resume();
        }
        StringBuilder json = new StringBuilder();
        json.append("{\"client\":").append(quote(client));
        json.append(",\"listed\":").append(listed);
        json.append(",\"described\":").append(described);
        json.append(",\"admin\":[");
        for (int n = 0; n < admin.size(); n++) {
            json.append(n == 0 ? "" : ",").append(quote(admin.get(n)));
        }
        json.append("],\"produced\":").append(produced);
        json.append(",\"consumed\":").append(first.consumed);
        json.append(",\"per_key_order\":").append(first.perKeyOrder);
        json.append(",\"split\":").append(first.split);
        json.append(",\"resumed\":").append(resumed);
        json.append("}");
        System.out.println(json);
        System.out.flush();
    }

    /**
     * The library's version, from the resource kafka-clients carries (its AppInfoParser,
     * which reads it, moved to an internal package in 4.x).
     */
    static String clientVersion() throws java.io.IOException {
        Properties props = new Properties();
        try (java.io.InputStream in = KafkaProducer.class.getResourceAsStream("/kafka/kafka-version.properties")) {
            if (in == null) {
                return "unknown";
            }
            props.load(in);
        }
        return props.getProperty("version", "unknown");
    }

    static String quote(String s) {
        StringBuilder out = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') {
                out.append('\\').append(c);
            } else if (c < 0x20) {
                out.append(String.format("\\u%04x", (int) c));
            } else {
                out.append(c);
            }
        }
        return out.append('"').toString();
    }

    // ---- 1. Listing and describing -------------------------------------------------------

    /**
     * The topic is in the all-topics listing with its partitions: the AdminClient's
     * listTopics() (Metadata for all topics) names it, and a consumer's listTopics() (the
     * same request, with the partitions it returns) gives it 3 partitions.
     */
    boolean listTopics(Admin adminClient) throws Exception {
        Set<String> names = adminClient.listTopics().names().get(CALL_MS_MAX, TimeUnit.MILLISECONDS);
        log("Admin.listTopics: " + new TreeSet<>(names));
        Map<String, List<PartitionInfo>> all;
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps(group + "-lister", false))) {
            all = consumer.listTopics(Duration.ofMillis(CALL_MS_MAX));
        }
        List<PartitionInfo> partitions = all.get(topic);
        int count = partitions == null ? -1 : partitions.size();
        log("KafkaConsumer.listTopics: " + new TreeSet<>(all.keySet()) + ", " + topic + " with " + count + " partitions");
        return names.contains(topic) && count == PARTITIONS;
    }

    /** Partitions of the topic in a describe of it alone. */
    int describeTopic(Admin adminClient) throws Exception {
        Map<String, TopicDescription> described =
                adminClient.describeTopics(List.of(topic)).allTopicNames().get(CALL_MS_MAX, TimeUnit.MILLISECONDS);
        TopicDescription description = described.get(topic);
        log("Admin.describeTopics: " + description);
        return description == null ? -1 : description.partitions().size();
    }

    // ---- 2. Admin calls on a topic of their own -------------------------------------------

    void adminCalls(Admin adminClient) throws Exception {
        String name = topic + ".admin";
        CreateTopicsResult created = adminClient.createTopics(List.of(new NewTopic(name, ADMIN_PARTITIONS, (short) 1)));
        created.all().get(CALL_MS_MAX, TimeUnit.MILLISECONDS);
        int partitions = created.numPartitions(name).get();
        if (partitions != ADMIN_PARTITIONS) {
            throw new Mismatch("CreateTopics of " + name + " with " + ADMIN_PARTITIONS + " partitions answered " + partitions);
        }
        admin.add("CreateTopics");

        ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, name);
        Map<ConfigResource, Config> configs =
                adminClient.describeConfigs(List.of(resource)).all().get(CALL_MS_MAX, TimeUnit.MILLISECONDS);
        Config config = configs.get(resource);
        if (config == null || config.entries().isEmpty()) {
            throw new Mismatch("DescribeConfigs of " + name + " gave no configs: " + configs);
        }
        log("Admin.describeConfigs: " + config.entries().size() + " entries, cleanup.policy="
                + (config.get("cleanup.policy") == null ? null : config.get("cleanup.policy").value()));
        admin.add("DescribeConfigs");

        // Changing the topic (only this client does it so far: tests/clients/README.md).
        alterConfigs(adminClient, resource, config);
        createPartitions(adminClient, name);
        deleteRecords(adminClient, name);

        adminClient.deleteTopics(List.of(name)).all().get(CALL_MS_MAX, TimeUnit.MILLISECONDS);
        admin.add("DeleteTopics");
    }

    /** The topic's configs as DescribeConfigs gives them now. */
    static Config describeConfigs(Admin adminClient, ConfigResource resource) throws Exception {
        Config config = adminClient.describeConfigs(List.of(resource)).all()
                .get(CALL_MS_MAX, TimeUnit.MILLISECONDS).get(resource);
        if (config == null) {
            throw new Mismatch("DescribeConfigs of " + resource.name() + " left it out");
        }
        return config;
    }

    /** Fails unless `config` has `name` with `value` from `source`. */
    static void expectConfig(Config config, String name, String value, ConfigEntry.ConfigSource source, String when) {
        ConfigEntry entry = config.get(name);
        if (entry == null || !value.equals(entry.value()) || entry.source() != source) {
            throw new Mismatch("DescribeConfigs " + when + ": expected " + name + "=" + value + " from " + source
                    + ", got " + entry);
        }
        log("Admin.describeConfigs " + when + ": " + name + "=" + entry.value() + " from " + entry.source());
    }

    static void incrementalAlter(Admin adminClient, ConfigResource resource, AlterConfigOp... ops) throws Exception {
        adminClient.incrementalAlterConfigs(Map.of(resource, List.of(ops))).all().get(CALL_MS_MAX, TimeUnit.MILLISECONDS);
    }

    /**
     * Waits for a call the broker must refuse with `expected`: its success, or any other
     * failure, fails the run.
     */
    static void expectRefused(KafkaFuture<?> call, Class<? extends Throwable> expected, String what) throws Exception {
        try {
            call.get(CALL_MS_MAX, TimeUnit.MILLISECONDS);
        } catch (ExecutionException e) {
            if (expected.isInstance(e.getCause())) {
                log(what + ": refused as expected: " + e.getCause());
                return;
            }
            throw new Mismatch(what + ": expected " + expected.getSimpleName() + ", got " + e.getCause());
        }
        throw new Mismatch(what + " succeeded; expected " + expected.getSimpleName());
    }

    /**
     * IncrementalAlterConfigs: two SETs show in DescribeConfigs as the topic's own values
     * (DYNAMIC_TOPIC_CONFIG); a DELETE of one brings back the default it had at creation
     * and leaves the other; an APPEND on retention.ms (not a list) is refused with
     * INVALID_CONFIG and changes nothing.
     */
    void alterConfigs(Admin adminClient, ConfigResource resource, Config created) throws Exception {
        ConfigEntry retentionDefault = created.get(RETENTION_MS);
        if (retentionDefault == null || retentionDefault.value() == null
                || retentionDefault.source() != ConfigEntry.ConfigSource.DEFAULT_CONFIG) {
            throw new Mismatch("DescribeConfigs of the new topic " + resource.name() + ": " + RETENTION_MS
                    + " is not a default: " + retentionDefault);
        }
        String retention = String.valueOf(RETENTION_MS_SET);
        String maxMessage = String.valueOf(MAX_MESSAGE_BYTES_SET);
        ConfigEntry.ConfigSource dynamic = ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG;
        ConfigEntry.ConfigSource fallback = ConfigEntry.ConfigSource.DEFAULT_CONFIG;

        incrementalAlter(adminClient, resource,
                new AlterConfigOp(new ConfigEntry(RETENTION_MS, retention), AlterConfigOp.OpType.SET),
                new AlterConfigOp(new ConfigEntry(MAX_MESSAGE_BYTES, maxMessage), AlterConfigOp.OpType.SET));
        Config set = describeConfigs(adminClient, resource);
        expectConfig(set, RETENTION_MS, retention, dynamic, "after SET");
        expectConfig(set, MAX_MESSAGE_BYTES, maxMessage, dynamic, "after SET");

        // DELETE with an empty value, as Kafka's kafka-configs.sh sends it.
        incrementalAlter(adminClient, resource,
                new AlterConfigOp(new ConfigEntry(RETENTION_MS, ""), AlterConfigOp.OpType.DELETE));
        Config deleted = describeConfigs(adminClient, resource);
        expectConfig(deleted, RETENTION_MS, retentionDefault.value(), fallback, "after DELETE");
        expectConfig(deleted, MAX_MESSAGE_BYTES, maxMessage, dynamic, "after DELETE");

        AlterConfigOp append = new AlterConfigOp(new ConfigEntry(RETENTION_MS, "1000"), AlterConfigOp.OpType.APPEND);
        expectRefused(adminClient.incrementalAlterConfigs(Map.of(resource, List.of(append))).all(),
                InvalidConfigurationException.class, "IncrementalAlterConfigs APPEND " + RETENTION_MS);
        Config appended = describeConfigs(adminClient, resource);
        expectConfig(appended, RETENTION_MS, retentionDefault.value(), fallback, "after the refused APPEND");
        admin.add("IncrementalAlterConfigs");
    }

    /**
     * CreatePartitions: growing the topic by one shows in a describe of it; asking for the
     * count it already has is refused with INVALID_PARTITIONS.
     */
    void createPartitions(Admin adminClient, String name) throws Exception {
        int grown = ADMIN_PARTITIONS + 1;
        adminClient.createPartitions(Map.of(name, NewPartitions.increaseTo(grown))).all()
                .get(CALL_MS_MAX, TimeUnit.MILLISECONDS);
        TopicDescription description = adminClient.describeTopics(List.of(name)).allTopicNames()
                .get(CALL_MS_MAX, TimeUnit.MILLISECONDS).get(name);
        int described = description == null ? -1 : description.partitions().size();
        log("Admin.describeTopics after CreatePartitions to " + grown + ": " + described + " partitions");
        if (described != grown) {
            throw new Mismatch("CreatePartitions of " + name + " to " + grown + ", then describeTopics gives "
                    + description);
        }
        expectRefused(adminClient.createPartitions(Map.of(name, NewPartitions.increaseTo(grown))).all(),
                InvalidPartitionsException.class, "CreatePartitions of " + name + " to its own count " + grown);
        admin.add("CreatePartitions");
    }

    /**
     * DeleteRecords: after a few records go to partition 0, deleting those before offset
     * DELETE_BEFORE answers that as the low watermark; ListOffsets earliest then gives it
     * (and latest still the log end); a fetch below it is out of range, one at it reads the
     * record that was there.
     */
    void deleteRecords(Admin adminClient, String name) throws Exception {
        TopicPartition tp = new TopicPartition(name, 0);
        Properties producerProps = common(group + "-admin-producer");
        producerProps.put(ProducerConfig.ACKS_CONFIG, "all");
        producerProps.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, CALL_MS_MAX);
        producerProps.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, CALL_MS_MAX);
        producerProps.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        producerProps.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps)) {
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            for (int i = 0; i < ADMIN_RECORDS; i++) {
                sent.add(producer.send(new ProducerRecord<>(name, tp.partition(), key(i), value(i))));
            }
            producer.flush();
            for (int i = 0; i < ADMIN_RECORDS; i++) {
                long offset = sent.get(i).get(CALL_MS_MAX, TimeUnit.MILLISECONDS).offset();
                if (offset != i) {
                    throw new Mismatch("record " + i + " to the new topic " + tp + " went to offset " + offset);
                }
            }
        }

        DeletedRecords deleted = adminClient.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(DELETE_BEFORE)))
                .lowWatermarks().get(tp).get(CALL_MS_MAX, TimeUnit.MILLISECONDS);
        log("Admin.deleteRecords before " + DELETE_BEFORE + " in " + tp + ": low watermark " + deleted.lowWatermark());
        if (deleted.lowWatermark() != DELETE_BEFORE) {
            throw new Mismatch("DeleteRecords before offset " + DELETE_BEFORE + " in " + tp + " answered low watermark "
                    + deleted.lowWatermark());
        }
        long earliest = adminClient.listOffsets(Map.of(tp, OffsetSpec.earliest())).partitionResult(tp)
                .get(CALL_MS_MAX, TimeUnit.MILLISECONDS).offset();
        long latest = adminClient.listOffsets(Map.of(tp, OffsetSpec.latest())).partitionResult(tp)
                .get(CALL_MS_MAX, TimeUnit.MILLISECONDS).offset();
        log("Admin.listOffsets after DeleteRecords: " + tp + " from " + earliest + " to " + latest);
        if (earliest != DELETE_BEFORE || latest != ADMIN_RECORDS) {
            throw new Mismatch("ListOffsets of " + tp + " after DeleteRecords before " + DELETE_BEFORE + ": earliest "
                    + earliest + ", latest " + latest + " (expected " + DELETE_BEFORE + " and " + ADMIN_RECORDS + ")");
        }
        fetchAfterDeleteRecords(tp);
        admin.add("DeleteRecords");
    }

    /**
     * A consumer without a reset policy that fetches from offset 0 of `tp` gets
     * OFFSET_OUT_OF_RANGE; from DELETE_BEFORE it reads the record produced there.
     */
    void fetchAfterDeleteRecords(TopicPartition tp) throws Exception {
        Properties props = consumerProps(group + "-admin-reader", false);
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none");
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
            consumer.assign(List.of(tp));
            consumer.seek(tp, 0);
            long deadline = System.currentTimeMillis() + CALL_MS_MAX;
            boolean outOfRange = false;
            while (!outOfRange && System.currentTimeMillis() < deadline) {
                try {
                    ConsumerRecords<String, String> records = consumer.poll(POLL);
                    if (!records.isEmpty()) {
                        throw new Mismatch("a fetch of " + tp + " from offset 0, below its log start " + DELETE_BEFORE
                                + ", read offset " + records.iterator().next().offset());
                    }
                } catch (OffsetOutOfRangeException e) {
                    log("KafkaConsumer.poll from offset 0 of " + tp + ": " + e.getMessage());
                    outOfRange = true;
                }
            }
            if (!outOfRange) {
                throw new Mismatch("a fetch of " + tp + " from offset 0, below its log start " + DELETE_BEFORE
                        + ", was not out of range within " + CALL_MS_MAX + " ms");
            }

            consumer.seek(tp, DELETE_BEFORE);
            ConsumerRecord<String, String> first = null;
            while (first == null && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> record : consumer.poll(POLL)) {
                    first = first == null ? record : first;
                }
            }
            if (first == null || first.offset() != DELETE_BEFORE || index(first) != DELETE_BEFORE) {
                throw new Mismatch("a fetch of " + tp + " from its new log start " + DELETE_BEFORE + " read "
                        + (first == null ? "nothing" : "offset " + first.offset() + " value " + first.value()));
            }
            log("KafkaConsumer.poll from offset " + DELETE_BEFORE + " of " + tp + ": read " + first.value());
        }
    }

    // ---- 3. and 5. Producing --------------------------------------------------------------

    /** Sends records `from` .. `from + count - 1`; returns how many were acknowledged. */
    int produce(KafkaProducer<String, String> producer, int from, int count) throws Exception {
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        for (int i = from; i < from + count; i++) {
            sent.add(producer.send(new ProducerRecord<>(topic, key(i), value(i))));
        }
        producer.flush();
        int acked = 0;
        for (Future<RecordMetadata> future : sent) {
            future.get(CALL_MS_MAX, TimeUnit.MILLISECONDS); // throws if the send failed
            acked++;
        }
        log("produced " + acked + " records from i=" + from);
        return acked;
    }

    // ---- 4. The group of two --------------------------------------------------------------

    static final class GroupResult {
        int consumed;
        boolean perKeyOrder;
        boolean split;
    }

    /** One member of the group, polling in its own thread until told to stop. */
    final class Member implements Runnable {
        final String name;
        final Map<String, Read> reads;
        final AtomicBoolean stop;
        final CountDownLatch committed;
        final CountDownLatch closing;
        /** Partitions it owns, as of its last poll (then at its commit). */
        final AtomicReference<Set<Integer>> owned = new AtomicReference<>(Set.of());
        final AtomicReference<Throwable> failure = new AtomicReference<>();
        final Thread thread;

        Member(String name, Map<String, Read> reads, AtomicBoolean stop, CountDownLatch committed, CountDownLatch closing) {
            this.name = name;
            this.reads = reads;
            this.stop = stop;
            this.committed = committed;
            this.closing = closing;
            this.thread = new Thread(this, name);
        }

        @Override
        public void run() {
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps(name, true))) {
                consumer.subscribe(List.of(topic));
                while (!stop.get()) {
                    for (ConsumerRecord<String, String> record : consumer.poll(POLL)) {
                        reads.putIfAbsent(record.partition() + "/" + record.offset(),
                                new Read(record.partition(), record.offset(), record.key(), index(record)));
                    }
                    owned.set(partitions(consumer.assignment()));
                }
                // Both commit before either leaves, so no commit meets the rebalance a leave starts.
                owned.set(partitions(consumer.assignment()));
                consumer.commitSync(Duration.ofMillis(CALL_MS_MAX));
                log(name + " committed " + owned.get());
                committed.countDown();
                if (!closing.await(CALL_MS_MAX, TimeUnit.MILLISECONDS)) {
                    throw new Mismatch(name + ": the other member did not commit");
                }
            } catch (Throwable e) {
                failure.set(e);
                committed.countDown();
            }
        }
    }

    static Set<Integer> partitions(Collection<TopicPartition> assignment) {
        Set<Integer> out = new TreeSet<>();
        for (TopicPartition tp : assignment) {
            out.add(tp.partition());
        }
        return out;
    }

    static boolean split(Set<Integer> a, Set<Integer> b) {
        Set<Integer> union = new TreeSet<>(a);
        union.addAll(b);
        Set<Integer> all = new TreeSet<>();
        for (int p = 0; p < PARTITIONS; p++) {
            all.add(p);
        }
        return !a.isEmpty() && !b.isEmpty() && a.size() + b.size() == union.size() && union.equals(all);
    }

    GroupResult consumeAsGroup(Admin adminClient) throws Exception {
        Map<String, Read> reads = new ConcurrentHashMap<>();
        AtomicBoolean stop = new AtomicBoolean();
        CountDownLatch committed = new CountDownLatch(2);
        CountDownLatch closing = new CountDownLatch(1);
        Member a = new Member(group + "-a", reads, stop, committed, closing);
        Member b = new Member(group + "-b", reads, stop, committed, closing);
        a.thread.start();
        b.thread.start();

        // Until everything is read and the two own a split of the partitions (a member that
        // joined late may first have found the other owning all three).
        long deadline = System.currentTimeMillis() + GROUP_MS_MAX;
        long lastLog = 0;
        while (System.currentTimeMillis() < deadline && a.failure.get() == null && b.failure.get() == null) {
            if (reads.size() >= FIRST_RECORDS && split(a.owned.get(), b.owned.get())) {
                break;
            }
            if (System.currentTimeMillis() - lastLog > 5_000) {
                lastLog = System.currentTimeMillis();
                log("group: " + reads.size() + " read, " + a.name + " owns " + a.owned.get() + ", " + b.name
                        + " owns " + b.owned.get());
            }
            Thread.sleep(50);
        }
        log("group: " + reads.size() + " read, " + a.name + " owns " + a.owned.get() + ", " + b.name + " owns "
                + b.owned.get());
        boolean settled = reads.size() >= FIRST_RECORDS && split(a.owned.get(), b.owned.get());
        if (settled) {
            // The group as the coordinator has it while both members are in it.
            groupCalls(adminClient, List.of(a.name, b.name));
        }

        stop.set(true);
        committed.await(CALL_MS_MAX * 2L, TimeUnit.MILLISECONDS);
        closing.countDown();
        a.thread.join(CALL_MS_MAX * 2L);
        b.thread.join(CALL_MS_MAX * 2L);
        for (Member m : List.of(a, b)) {
            if (m.failure.get() != null) {
                throw new RuntimeException(m.name + " failed", m.failure.get());
            }
            if (m.thread.isAlive()) {
                throw new Mismatch(m.name + " did not close");
            }
        }
        if (!settled) {
            log("group: not settled after " + GROUP_MS_MAX + " ms");
        }

        GroupResult result = new GroupResult();
        result.consumed = reads.size();
        result.split = split(a.owned.get(), b.owned.get());
        result.perKeyOrder = perKeyOrder(reads.values());
        return result;
    }

    /** Each key's records are in one partition, with `i` increasing with the offset. */
    static boolean perKeyOrder(Collection<Read> reads) {
        Map<String, TreeMap<Long, Read>> byKey = new HashMap<>();
        Map<String, Set<Integer>> partitionsOfKey = new HashMap<>();
        for (Read r : reads) {
            byKey.computeIfAbsent(r.key(), k -> new TreeMap<>()).put(r.offset(), r);
            partitionsOfKey.computeIfAbsent(r.key(), k -> new HashSet<>()).add(r.partition());
        }
        boolean ok = true;
        for (Map.Entry<String, TreeMap<Long, Read>> entry : byKey.entrySet()) {
            String key = entry.getKey();
            if (partitionsOfKey.get(key).size() != 1) {
                log("key " + key + " is in partitions " + partitionsOfKey.get(key));
                ok = false;
                continue;
            }
            int last = -1;
            for (Read r : entry.getValue().values()) {
                if (r.i() <= last) {
                    log("key " + key + ": i=" + r.i() + " at offset " + r.offset() + " after i=" + last);
                    ok = false;
                }
                last = r.i();
            }
        }
        return ok;
    }

    /** ListGroups and DescribeGroups while the two members are in the group. */
    @SuppressWarnings("deprecation") // state(): in both 3.9 and 4.4; 4.x adds groupState()
    void groupCalls(Admin adminClient, List<String> memberClientIds) throws Exception {
        Collection<ConsumerGroupListing> groups =
                adminClient.listConsumerGroups().all().get(CALL_MS_MAX, TimeUnit.MILLISECONDS);
        log("Admin.listConsumerGroups: " + groups);
        if (groups.stream().noneMatch(g -> g.groupId().equals(group))) {
            throw new Mismatch("ListGroups does not list " + group + ": " + groups);
        }
        admin.add("ListGroups");

        ConsumerGroupDescription description = adminClient.describeConsumerGroups(List.of(group))
                .describedGroups().get(group).get(CALL_MS_MAX, TimeUnit.MILLISECONDS);
        log("Admin.describeConsumerGroups: " + description);
        Set<String> clientIds = new TreeSet<>();
        Set<Integer> assigned = new TreeSet<>();
        int assignedCount = 0;
        for (MemberDescription member : description.members()) {
            clientIds.add(member.clientId());
            Set<Integer> mine = partitions(member.assignment().topicPartitions());
            assigned.addAll(mine);
            assignedCount += mine.size();
        }
        if (!clientIds.equals(new TreeSet<>(memberClientIds)) || assignedCount != PARTITIONS
                || assigned.size() != PARTITIONS || !"Stable".equalsIgnoreCase(String.valueOf(description.state()))) {
            throw new Mismatch("DescribeGroups of " + group + " does not show the two members "
                    + memberClientIds + " owning the " + PARTITIONS + " partitions in a Stable group: " + description);
        }
        admin.add("DescribeGroups");
    }

    /** OffsetFetch (the group's commits) and ListOffsets (the log ends) after step 4. */
    void committedAndListedOffsets(Admin adminClient) throws Exception {
        Map<TopicPartition, OffsetAndMetadata> committed = adminClient.listConsumerGroupOffsets(group)
                .partitionsToOffsetAndMetadata().get(CALL_MS_MAX, TimeUnit.MILLISECONDS);
        log("Admin.listConsumerGroupOffsets: " + committed);

        Map<TopicPartition, OffsetSpec> earliest = new HashMap<>();
        Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
        for (int p = 0; p < PARTITIONS; p++) {
            earliest.put(new TopicPartition(topic, p), OffsetSpec.earliest());
            latest.put(new TopicPartition(topic, p), OffsetSpec.latest());
        }
        Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> starts =
                adminClient.listOffsets(earliest).all().get(CALL_MS_MAX, TimeUnit.MILLISECONDS);
        Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> ends =
                adminClient.listOffsets(latest).all().get(CALL_MS_MAX, TimeUnit.MILLISECONDS);
        long records = 0;
        for (int p = 0; p < PARTITIONS; p++) {
            TopicPartition tp = new TopicPartition(topic, p);
            if (starts.get(tp).offset() != 0) {
                throw new Mismatch("ListOffsets earliest of " + tp + " is " + starts.get(tp).offset());
            }
            records += ends.get(tp).offset();
        }
        log("Admin.listOffsets: ends " + ends.values().stream().map(i -> i.offset()).toList());
        if (records != FIRST_RECORDS) {
            throw new Mismatch("ListOffsets latest of " + topic + " sums to " + records + ", not " + FIRST_RECORDS);
        }
        admin.add("ListOffsets");

        // The group read everything (when it got that far): its commits are the log ends.
        boolean allCommitted = true;
        for (int p = 0; p < PARTITIONS; p++) {
            TopicPartition tp = new TopicPartition(topic, p);
            OffsetAndMetadata offset = committed.get(tp);
            allCommitted &= offset != null && offset.offset() == ends.get(tp).offset();
        }
        if (!allCommitted) {
            log("the group's commits " + committed + " are not the log ends " + ends);
        }
        admin.add("OffsetFetch");
    }

    // ---- 5. A fresh member resumes ---------------------------------------------------------

    /**
     * A new member of the group reads until it has 50 records or 15 s pass. Returns the new
     * records (i >= 300) it read minus the old ones (i < 300), so it is 50 exactly when it
     * read the 50 new records and none of the first 300.
     */
    int resume() {
        Set<String> fresh = new HashSet<>();
        Set<String> old = new HashSet<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps(group + "-fresh", true))) {
            consumer.subscribe(List.of(topic));
            long deadline = System.currentTimeMillis() + RESUME_MS_MAX;
            while (fresh.size() + old.size() < RESUMED_RECORDS && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> record : consumer.poll(POLL)) {
                    String at = record.partition() + "/" + record.offset();
                    (index(record) >= FIRST_RECORDS ? fresh : old).add(at);
                }
            }
        }
        log("fresh member read " + fresh.size() + " new and " + old.size() + " old records"
                + (old.isEmpty() ? "" : " (it did not resume from the group's commits)"));
        return fresh.size() - old.size();
    }
}
