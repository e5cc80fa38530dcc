package main

// franz-go's transactional session (kgo.GroupTransactSession), for tests/transactions.rs:
//
//	matrix eos BOOTSTRAP PREFIX
//
// Creates PREFIX-in and PREFIX-out (2 partitions each) with kadm and produces 500 records
// ("v0".."v499", record i to partition i%2) to PREFIX-in with a plain producer. A
// GroupTransactSession (group PREFIX-g, read_committed, transactional id PREFIX-tx) then
// reads batches of up to 50 and writes each record upper-cased to the same partition of
// PREFIX-out, ending each transaction with End(TryCommit), except the third batch, which it
// ends with End(TryAbort): the session goes back to the group's committed offsets and reads
// that batch again, and a later transaction commits it. It stops once the group's committed
// offsets cover all 500 (as the session sees them, then as the broker answers a
// require_stable OffsetFetch). A read_committed read of PREFIX-out must find each input
// exactly once (500 records); a read_uncommitted read must find more, the aborted batch's
// records among them. Prints `out 500`, `committed 500` and `aborted-seen true`
// (tab-separated); any failed expectation exits 1 with the reason on stderr.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	eosRecords = 500
	eosBatch   = 50
	// The batch (counted from 1, batches with records only) ended with TryAbort.
	eosAbortRound = 3
	// Longest the transactional loop may take to commit all the input.
	eosLoopTimeout = 90 * time.Second
	// Longest one poll waits for records.
	eosPollWait = 2 * time.Second
	// Longest a read of PREFIX-out may take.
	eosReadTimeout = 30 * time.Second
	// How long the group's committed offsets may stay unstable after the last commit, and
	// the pause between two OffsetFetch requests meanwhile.
	eosStableTimeout = 10 * time.Second
	eosStableRetry   = 20 * time.Millisecond
)

type eosFailure struct{ msg string }

// eosFail stops the program (eosMain recovers it into exit 1).
func eosFail(format string, args ...any) {
	panic(eosFailure{fmt.Sprintf(format, args...)})
}

func eosMain(args []string) (code int) {
	if len(args) != 2 {
		fmt.Fprintf(os.Stderr, "usage: matrix eos BOOTSTRAP PREFIX\n")
		return 2
	}
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(eosFailure)
			if !ok {
				panic(r)
			}
			logf("eos failed: %s", f.msg)
			code = 1
		}
	}()
	lines := eos(args[0], args[1])
	for _, line := range lines {
		fmt.Println(line)
	}
	logf("eos done in %.1f s", time.Since(started).Seconds())
	return 0
}

func eosInput(i int) string { return fmt.Sprintf("v%d", i) }

func eos(bootstrap, prefix string) []string {
	source, sink, group := prefix+"-in", prefix+"-out", prefix+"-g"
	ctx := context.Background()

	// Topics and input, with a plain (idempotent, not transactional) producer.
	plain, err := kgo.NewClient(
		kgo.SeedBrokers(bootstrap),
		kgo.ClientID("fjord-eos-plain"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		franzLogger("eos plain"),
	)
	if err != nil {
		eosFail("plain client: %v", err)
	}
	defer plain.Close()
	adm := kadm.NewClient(plain)
	for _, topic := range []string{source, sink} {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		_, err := adm.CreateTopic(cctx, 2, 1, nil, topic)
		cancel()
		if err != nil {
			eosFail("CreateTopic(%s): %v", topic, err)
		}
	}
	var input []*kgo.Record
	for i := 0; i < eosRecords; i++ {
		input = append(input, &kgo.Record{Topic: source, Partition: int32(i % 2), Value: []byte(eosInput(i))})
	}
	for start := 0; start < eosRecords; start += eosBatch {
		pctx, cancel := context.WithTimeout(ctx, callTimeout)
		err := plain.ProduceSync(pctx, input[start:start+eosBatch]...).FirstErr()
		cancel()
		if err != nil {
			eosFail("producing the input (records %d..): %v", start, err)
		}
	}
	logf("eos: %d records on %s", eosRecords, source)

	// The transactional consume-transform-produce loop.
	sess, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(bootstrap),
		kgo.ClientID("fjord-eos-session"),
		kgo.TransactionalID(prefix+"-tx"),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(source),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.SessionTimeout(sessionTimeout),
		kgo.HeartbeatInterval(heartbeatInterval),
		kgo.FetchMaxWait(fetchMaxWait),
		franzLogger("eos session"),
	)
	if err != nil {
		eosFail("NewGroupTransactSession: %v", err)
	}

	consumed := map[string]int{}  // input value -> times read by the session
	committed := map[string]int{} // input value -> times in a committed transaction
	var aborted []string          // input values of the aborted batch
	rounds, uncommittedRounds := 0, 0
	deadline := time.Now().Add(eosLoopTimeout)
	for eosCommittedSum(sess.Client().CommittedOffsets(), source) < eosRecords {
		if time.Now().After(deadline) {
			eosFail("after %s, the session's committed offsets are %v (%d of %d inputs committed, %d rounds)",
				eosLoopTimeout, sess.Client().CommittedOffsets(), len(committed), eosRecords, rounds)
		}
		pctx, cancel := context.WithTimeout(ctx, eosPollWait)
		fetches := sess.PollRecords(pctx, eosBatch)
		cancel()
		if fetches.IsClientClosed() {
			eosFail("the session's client closed")
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				eosFail("fetch %s/%d: %v", topic, partition, err)
			}
		})
		records := fetches.Records()
		if len(records) == 0 {
			continue
		}
		rounds++
		if err := sess.Begin(); err != nil {
			eosFail("round %d: Begin: %v", rounds, err)
		}
		var out []*kgo.Record
		var values []string
		for _, r := range records {
			values = append(values, string(r.Value))
			consumed[string(r.Value)]++
			out = append(out, &kgo.Record{Topic: sink, Partition: r.Partition, Key: r.Key, Value: bytes.ToUpper(r.Value)})
		}
		pctx, cancel = context.WithTimeout(ctx, callTimeout)
		produceErr := sess.ProduceSync(pctx, out...).FirstErr()
		cancel()
		if produceErr != nil {
			eosFail("round %d: producing %d records to %s in the transaction: %v", rounds, len(out), sink, produceErr)
		}
		try := kgo.TryCommit
		if rounds == eosAbortRound {
			try = kgo.TryAbort
		}
		ectx, cancel := context.WithTimeout(ctx, callTimeout)
		ok, err := sess.End(ectx, try)
		cancel()
		if err != nil {
			eosFail("round %d (%d records): End(commit=%v): %v", rounds, len(records), bool(try), err)
		}
		switch {
		case try == kgo.TryAbort && ok:
			eosFail("round %d: End(TryAbort) reports a commit", rounds)
		case try == kgo.TryAbort:
			aborted = values
			logf("eos round %d: aborted %d records (%s..%s)", rounds, len(values), values[0], values[len(values)-1])
		case ok:
			for _, v := range values {
				committed[v]++
			}
		default:
			// The session could not commit (a rebalance, a lost member): it aborted, and
			// reads from the committed offsets again.
			uncommittedRounds++
			logf("eos round %d: End(TryCommit) did not commit; the session aborted it", rounds)
		}
	}
	logf("eos: %d rounds (%d TryCommit rounds not committed), committed offsets %v",
		rounds, uncommittedRounds, sess.Client().CommittedOffsets())
	if aborted == nil {
		eosFail("no round was aborted (%d rounds)", rounds)
	}

	// Each input committed exactly once, the aborted batch read again.
	var missing, twice []string
	for i := 0; i < eosRecords; i++ {
		switch n := committed[eosInput(i)]; {
		case n == 0:
			missing = append(missing, eosInput(i))
		case n > 1:
			twice = append(twice, eosInput(i))
		}
	}
	if len(missing) > 0 || len(twice) > 0 {
		eosFail("committed transactions hold inputs missing %s, more than once %s", eosSample(missing), eosSample(twice))
	}
	for _, v := range aborted {
		if consumed[v] < 2 {
			eosFail("%s, of the aborted round, was read %d time(s), not again after the abort", v, consumed[v])
		}
	}

	// The group's committed offsets as the broker has them, once stable: the last commit's
	// markers may still be on their way (EndTxn answers once the commit is prepared), and
	// until the group's are written an OffsetFetch with require_stable answers
	// UNSTABLE_OFFSET_COMMIT, which kadm does not retry (KIP-447: the client retries).
	var fetched kadm.OffsetResponses
	fetchStarted := time.Now()
	for unstable := 0; ; unstable++ {
		fctx, cancel := context.WithTimeout(kadm.RequireStable(ctx), callTimeout)
		fetched, err = adm.FetchOffsets(fctx, group)
		cancel()
		if err == nil {
			err = fetched.Error()
		}
		if errors.Is(err, kerr.UnstableOffsetCommit) && time.Since(fetchStarted) < eosStableTimeout {
			time.Sleep(eosStableRetry)
			continue
		}
		if err != nil {
			eosFail("FetchOffsets(%s) (require_stable, after %d UNSTABLE_OFFSET_COMMIT answers in %s): %v",
				group, unstable, time.Since(fetchStarted).Round(time.Millisecond), err)
		}
		logf("eos: the group's offsets are stable after %d UNSTABLE_OFFSET_COMMIT answers (%s)",
			unstable, time.Since(fetchStarted).Round(time.Millisecond))
		break
	}
	groupSum := int64(0)
	fetched.Each(func(o kadm.OffsetResponse) {
		if o.Topic == source && o.At >= 0 {
			groupSum += o.At
		}
	})
	if groupSum != eosRecords {
		eosFail("the group's committed offsets on %s sum to %d, not %d: %+v", source, groupSum, eosRecords, fetched)
	}
	sess.Close()

	// The output: read_committed holds each input once; read_uncommitted more.
	readCommitted := eosRead(bootstrap, sink, kgo.ReadCommitted(), eosRecords)
	var values []string
	for v, n := range readCommitted {
		for ; n > 0; n-- {
			values = append(values, v)
		}
	}
	missing, twice = nil, nil
	for i := 0; i < eosRecords; i++ {
		switch n := readCommitted[string(bytes.ToUpper([]byte(eosInput(i))))]; {
		case n == 0:
			missing = append(missing, eosInput(i))
		case n > 1:
			twice = append(twice, eosInput(i))
		}
	}
	if len(values) != eosRecords || len(missing) > 0 || len(twice) > 0 {
		eosFail("read_committed %s: %d records, inputs missing %s, more than once %s",
			sink, len(values), eosSample(missing), eosSample(twice))
	}
	readUncommitted := eosRead(bootstrap, sink, kgo.ReadUncommitted(), eosRecords+len(aborted))
	total := 0
	for _, n := range readUncommitted {
		total += n
	}
	if total <= eosRecords {
		eosFail("read_uncommitted %s: %d records, not more than the %d committed", sink, total, eosRecords)
	}
	for _, v := range aborted {
		if n := readUncommitted[string(bytes.ToUpper([]byte(v)))]; n < 2 {
			eosFail("read_uncommitted %s: %s (of the aborted round) %d time(s), not 2", sink, v, n)
		}
	}
	logf("eos: read_uncommitted %d records", total)
	return []string{
		fmt.Sprintf("out\t%d", len(values)),
		fmt.Sprintf("committed\t%d", groupSum),
		"aborted-seen\ttrue",
	}
}

// eosCommittedSum adds up the committed offsets of topic's partitions.
func eosCommittedSum(offsets map[string]map[int32]kgo.EpochOffset, topic string) int {
	sum := 0
	for _, o := range offsets[topic] {
		if o.Offset > 0 {
			sum += int(o.Offset)
		}
	}
	return sum
}

// eosRead reads topic's two partitions from the start with isolation level `level` until it
// has at least `want` records and a poll finds nothing more (or eosReadTimeout passes), and
// returns how many times each value was read.
func eosRead(bootstrap, topic string, level kgo.IsolationLevel, want int) map[string]int {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(bootstrap),
		kgo.ClientID("fjord-eos-reader"),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {
			0: kgo.NewOffset().AtStart(),
			1: kgo.NewOffset().AtStart(),
		}}),
		kgo.FetchIsolationLevel(level),
		kgo.FetchMaxWait(fetchMaxWait),
		franzLogger("eos reader"),
	)
	if err != nil {
		eosFail("reader: %v", err)
	}
	defer cl.Close()
	seen := map[string]int{}
	total := 0
	deadline := time.Now().Add(eosReadTimeout)
	for time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(context.Background(), eosPollWait)
		fetches := cl.PollFetches(pctx)
		cancel()
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				eosFail("reading %s/%d: %v", t, p, err)
			}
		})
		records := fetches.Records()
		for _, r := range records {
			seen[string(r.Value)]++
		}
		total += len(records)
		if len(records) == 0 && total >= want {
			break
		}
	}
	return seen
}

// eosSample is the first few of values, for messages.
func eosSample(values []string) string {
	if len(values) > 10 {
		return fmt.Sprintf("%v (%d in all)", values[:10], len(values))
	}
	return fmt.Sprintf("%v", values)
}
