import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Properties;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.producer.Callback;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Transactional against idempotent produce throughput and latency, for
 * benches/transactions.sh (docs/benchmarks.md, "Transactions").
 *
 * <pre>TxnBench BOOTSTRAP TOPIC idempotent|transactional RECORDS_PER_TXN TOTAL_RECORDS RECORD_BYTES</pre>
 *
 * One producer, in both modes: enable.idempotence=true, acks=all, linger.ms=5,
 * batch.size=262144, compression none, records of RECORD_BYTES random bytes without a key,
 * spread round-robin over TOPIC's partitions (so a transaction of more records than
 * partitions writes to every partition, as keyed data would). {@code transactional} adds a
 * transactional.id and wraps the records in transactions of RECORDS_PER_TXN records, each
 * ended by commitTransaction; {@code idempotent} ignores RECORDS_PER_TXN and ends with a
 * flush.
 *
 * <ol>
 * <li>Warm-up: max(TOTAL_RECORDS / 20, RECORDS_PER_TXN) records (rounded up to whole
 * transactions), up to 100,000, not measured.
 * <li>Throughput: TOTAL_RECORDS records (rounded up to whole transactions), timed from the
 * first send to the last commit (or flush); in transactional mode each commitTransaction
 * call is timed too (it includes sending what the transaction still holds).
 * <li>One at a time: 1,000 single records, each waited for before the next (after 100 not
 * measured). Idempotent: send, flush (as a commit does: no linger) and get, timed together.
 * Transactional: a transaction of that one record, its commitTransaction timed.
 * </ol>
 *
 * Prints tab-separated lines: {@code records N}, {@code seconds S}, {@code records_per_s R},
 * then for transactional mode {@code transactions}, {@code commit_p50_ms},
 * {@code commit_p99_ms}, {@code single_commit_p50_ms}, {@code single_commit_p99_ms}, for
 * idempotent mode {@code ack_p50_ms}, {@code ack_p99_ms}. Exits non-zero on any failed
 * delivery or commit.
 */
public final class TxnBench {
    static final int TIMEOUT_S = 60;
    static final int SINGLES = 1000;
    static final int SINGLES_WARMUP = 100;
    static final int WARMUP_MAX = 100_000;

    final KafkaProducer<byte[], byte[]> producer;
    final String topic;
    final int partitions;
    final boolean transactional;
    final int perTxn;
    final byte[] value;
    final AtomicReference<Exception> failed = new AtomicReference<>();
    final Callback onDelivery = (metadata, error) -> {
        if (error != null) {
            failed.compareAndSet(null, error);
        }
    };
    long next;

    TxnBench(String bootstrap, String topic, boolean transactional, int perTxn, int recordBytes) {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("enable.idempotence", "true");
        props.put("acks", "all");
        props.put("linger.ms", "5");
        props.put("batch.size", "262144");
        props.put("compression.type", "none");
        props.put("max.block.ms", String.valueOf(TIMEOUT_S * 1000));
        props.put("key.serializer", ByteArraySerializer.class.getName());
        props.put("value.serializer", ByteArraySerializer.class.getName());
        if (transactional) {
            props.put("transactional.id", "txnbench-" + topic + "-" + System.currentTimeMillis());
        }
        this.producer = new KafkaProducer<>(props);
        this.topic = topic;
        this.transactional = transactional;
        this.perTxn = perTxn;
        this.value = new byte[recordBytes];
        new Random(42).nextBytes(value);
        this.partitions = producer.partitionsFor(topic).size();
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 6) {
            fail("usage: TxnBench BOOTSTRAP TOPIC idempotent|transactional RECORDS_PER_TXN "
                + "TOTAL_RECORDS RECORD_BYTES");
        }
        boolean transactional = switch (args[2]) {
            case "idempotent" -> false;
            case "transactional" -> true;
            default -> {
                fail("unknown mode " + args[2] + ": idempotent or transactional");
                yield false;
            }
        };
        int perTxn = Integer.parseInt(args[3]);
        long total = Long.parseLong(args[4]);
        int recordBytes = Integer.parseInt(args[5]);
        if (transactional && perTxn < 1) {
            fail("RECORDS_PER_TXN must be at least 1");
        }
        TxnBench bench = new TxnBench(args[0], args[1], transactional, perTxn, recordBytes);
        try {
            bench.run(total);
        } finally {
            bench.producer.close();
        }
    }

    void run(long total) throws Exception {
        if (transactional) {
            producer.initTransactions();
        }
        long warmup = Math.min(WARMUP_MAX, Math.max(total / 20, transactional ? perTxn : 1));
        produce(warmup, null);

        List<Long> commits = new ArrayList<>();
        long start = System.nanoTime();
        long records = produce(total, commits);
        double seconds = (System.nanoTime() - start) / 1e9;
        emit("records", records);
        emit("seconds", String.format(Locale.ROOT, "%.3f", seconds));
        emit("records_per_s", Math.round(records / seconds));

        long[] singles = singles();
        if (transactional) {
            long[] c = commits.stream().mapToLong(Long::longValue).toArray();
            emit("transactions", c.length);
            emit("commit_p50_ms", ms(percentile(c, 50)));
            emit("commit_p99_ms", ms(percentile(c, 99)));
            emit("single_commit_p50_ms", ms(percentile(singles, 50)));
            emit("single_commit_p99_ms", ms(percentile(singles, 99)));
        } else {
            emit("ack_p50_ms", ms(percentile(singles, 50)));
            emit("ack_p99_ms", ms(percentile(singles, 99)));
        }
    }

    /** Sends `count` records (whole transactions in transactional mode, each commit's time
     * added to `commits` when not null); returns how many were sent. */
    long produce(long count, List<Long> commits) {
        long sent = 0;
        if (!transactional) {
            for (; sent < count; sent++) {
                send();
            }
            producer.flush();
            check();
            return sent;
        }
        while (sent < count) {
            producer.beginTransaction();
            for (int i = 0; i < perTxn; i++) {
                send();
            }
            sent += perTxn;
            long t0 = System.nanoTime();
            producer.commitTransaction();
            long elapsed = System.nanoTime() - t0;
            check();
            if (commits != null) {
                commits.add(elapsed);
            }
        }
        return sent;
    }

    /** One record at a time, each acknowledged (or committed) before the next: the
     * latencies of the measured ones, in nanoseconds. */
    long[] singles() throws Exception {
        long[] latencies = new long[SINGLES];
        for (int i = -SINGLES_WARMUP; i < SINGLES; i++) {
            long elapsed;
            if (transactional) {
                producer.beginTransaction();
                send();
                long t0 = System.nanoTime();
                producer.commitTransaction();
                elapsed = System.nanoTime() - t0;
            } else {
                long t0 = System.nanoTime();
                var future = producer.send(record());
                producer.flush();
                future.get(TIMEOUT_S, TimeUnit.SECONDS);
                elapsed = System.nanoTime() - t0;
            }
            check();
            if (i >= 0) {
                latencies[i] = elapsed;
            }
        }
        return latencies;
    }

    void send() {
        producer.send(record(), onDelivery);
    }

    ProducerRecord<byte[], byte[]> record() {
        int partition = (int) (next++ % partitions);
        return new ProducerRecord<>(topic, partition, null, value);
    }

    void check() {
        if (failed.get() != null) {
            fail("a delivery failed: " + failed.get());
        }
    }

    /** The nearest-rank percentile `p` of `values` (sorts a copy). */
    static long percentile(long[] values, double p) {
        long[] sorted = values.clone();
        Arrays.sort(sorted);
        int rank = (int) Math.ceil(p / 100 * sorted.length);
        return sorted[Math.max(0, Math.min(sorted.length - 1, rank - 1))];
    }

    static String ms(long nanos) {
        return String.format(Locale.ROOT, "%.3f", nanos / 1e6);
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
