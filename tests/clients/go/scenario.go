package main

// The matrix scenario of tests/clients/README.md, shared by the three clients: each client
// sits behind an Adapter (admin calls, produce, end offsets, a group member) and this file
// runs the steps and makes the checks.
//
// The two members of step 4 run at once in this process. They read until the group has
// settled: all 300 records read, both members own partitions, and each member has read
// each partition it owns to its end (the end offsets are listed after step 3). A member's
// position on a partition is the offset after the last record it read there since it was
// assigned the partition (-1 before it has read one there). Each member then commits its
// positions, and once both have, both close. A failed library call stops the program with a
// non-zero exit; so does a step that does not finish in time (groupTimeout), after printing
// the report of what it saw.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"
)

const (
	firstRecords    = 300
	resumedRecords  = 50
	keys            = 10
	partitions      = 3
	adminPartitions = 2
	// Records per send of step 3 (several batches, so sequence numbers advance across
	// requests).
	sendBatch = 50
	// Longest step 4 may take to read everything and settle the group.
	groupTimeout = 60 * time.Second
	// Longest the fresh member of step 5 reads.
	resumeTimeout = 15 * time.Second
	// Members' heartbeat (how soon one notices a rebalance) and session timeout.
	heartbeatInterval = 500 * time.Millisecond
	sessionTimeout    = 10 * time.Second
	// Longest a member's fetch waits on the broker for records.
	fetchMaxWait = 500 * time.Millisecond
	// Longest one admin or produce call may take.
	callTimeout = 30 * time.Second
)

// Adapter is one client library: the calls the scenario makes with it.
type Adapter interface {
	// Client names the library and its version (the report's `client`).
	Client() string
	// ListAll lists all topics with their partition counts (step 1).
	ListAll(ctx context.Context) (map[string]int, error)
	// Describe returns the partition count of `topic` from a describe of it alone.
	Describe(ctx context.Context, topic string) (int, error)
	// AdminCalls makes the admin calls of step 2 around the topic `extra` (created, described,
	// deleted) and the group `group`, calling done with the Kafka API name of each that
	// succeeded.
	AdminCalls(ctx context.Context, extra, group string, done func(api string)) error
	// Produce sends records first..first+count-1 of the scenario and returns how many were
	// acknowledged.
	Produce(ctx context.Context, first, count int) (int, error)
	// EndOffsets lists the end offset of each partition of the topic.
	EndOffsets(ctx context.Context) (map[int32]int64, error)
	// Member makes a group member reporting to state; it does not join yet.
	Member(state *MemberState) Member
	Close()
}

// Member is one member of the group.
type Member interface {
	// Start joins the group and reads in the background, reporting to its MemberState.
	Start(ctx context.Context) error
	// Commit commits the given positions (partition -> next offset to read).
	Commit(ctx context.Context, positions map[int32]int64) error
	// Close leaves the group.
	Close() error
}

var started = time.Now()

// secondMemberDelay (MATRIX_SECOND_MEMBER_DELAY_MS, for trying a client by hand; the tests
// leave it unset) starts the second member of step 4 that much after the first, so the
// group rebalances from one member to two.
var secondMemberDelay = func() time.Duration {
	ms, _ := strconv.Atoi(os.Getenv("MATRIX_SECOND_MEMBER_DELAY_MS"))
	return time.Duration(ms) * time.Millisecond
}()

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "matrix %6.2fs: %s\n", time.Since(started).Seconds(), fmt.Sprintf(format, args...))
}

// record returns the key and value of record i.
func record(i int) ([]byte, []byte) {
	key := fmt.Sprintf("key-%d", i%keys)
	return []byte(key), []byte(fmt.Sprintf("%s:%d", key, i))
}

// indexOf returns the i of a record the scenario produced, an error for anything else.
func indexOf(key, value []byte) (int, error) {
	cut := bytes.LastIndexByte(value, ':')
	if cut < 0 {
		return 0, fmt.Errorf("record not of the scenario: key %q value %q", key, value)
	}
	i, err := strconv.Atoi(string(value[cut+1:]))
	if err != nil || string(value[:cut]) != string(key) || string(key) != fmt.Sprintf("key-%d", i%keys) || i < 0 || i >= firstRecords+resumedRecords {
		return 0, fmt.Errorf("record not of the scenario: key %q value %q", key, value)
	}
	return i, nil
}

type position struct {
	partition int32
	offset    int64
}

// Records holds the records read, deduplicated by (partition, offset).
type Records struct {
	mu         sync.Mutex
	byPosition map[position]int
}

func newRecords() *Records {
	return &Records{byPosition: map[position]int{}}
}

func (r *Records) add(partition int32, offset int64, key, value []byte) error {
	i, err := indexOf(key, value)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	at := position{partition, offset}
	if known, ok := r.byPosition[at]; ok && known != i {
		return fmt.Errorf("partition %d offset %d read as record %d and as record %d", partition, offset, known, i)
	}
	r.byPosition[at] = i
	return nil
}

func (r *Records) size() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byPosition)
}

func (r *Records) snapshot() map[position]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[position]int, len(r.byPosition))
	for k, v := range r.byPosition {
		out[k] = v
	}
	return out
}

// perKeyOrder tells whether each key's records are in one partition, with i increasing
// with the offset.
func perKeyOrder(maps ...map[position]int) bool {
	byKey := map[int]map[int32]map[int64]int{}
	for _, m := range maps {
		for at, i := range m {
			k := i % keys
			if byKey[k] == nil {
				byKey[k] = map[int32]map[int64]int{}
			}
			if byKey[k][at.partition] == nil {
				byKey[k][at.partition] = map[int64]int{}
			}
			byKey[k][at.partition][at.offset] = i
		}
	}
	ok := true
	for k, parts := range byKey {
		if len(parts) != 1 {
			var ps []int32
			for p := range parts {
				ps = append(ps, p)
			}
			logf("key-%d is in partitions %v", k, ps)
			ok = false
			continue
		}
		for p, offsets := range parts {
			var os []int64
			for o := range offsets {
				os = append(os, o)
			}
			sort.Slice(os, func(a, b int) bool { return os[a] < os[b] })
			for n := 1; n < len(os); n++ {
				if offsets[os[n-1]] >= offsets[os[n]] {
					logf("key-%d in partition %d out of order at offsets %d, %d", k, p, os[n-1], os[n])
					ok = false
					break
				}
			}
		}
	}
	return ok
}

// splitOK tells whether two members own disjoint, non-empty partition sets that cover every
// partition.
func splitOK(owned []map[int32]int64) bool {
	if len(owned) != 2 || len(owned[0]) == 0 || len(owned[1]) == 0 {
		return false
	}
	all := map[int32]bool{}
	for _, o := range owned {
		for p := range o {
			if all[p] {
				return false
			}
			all[p] = true
		}
	}
	for p := int32(0); p < partitions; p++ {
		if !all[p] {
			return false
		}
	}
	return len(all) == partitions
}

// settled tells whether every member is at the end of every partition it owns.
func settled(owned []map[int32]int64, ends map[int32]int64) bool {
	for _, o := range owned {
		for p, pos := range o {
			if !(pos == ends[p] || (ends[p] == 0 && pos < 0)) {
				return false
			}
		}
	}
	return true
}

// MemberState is a member's view, fed by its library's callbacks: what it owns and how far
// it has read each partition it owns since it was assigned it.
type MemberState struct {
	name    string
	records *Records

	mu        sync.Mutex
	positions map[int32]int64
	err       error
}

func newMemberState(name string, records *Records) *MemberState {
	return &MemberState{name: name, records: records, positions: map[int32]int64{}}
}

// joined replaces the member's partitions with these (an eager rebalance: the library reads
// them from the committed offsets).
func (s *MemberState) joined(ps []int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	logf("%s joined with partitions %v", s.name, ps)
	s.positions = map[int32]int64{}
	for _, p := range ps {
		s.positions[p] = -1
	}
}

// assigned adds partitions (an incremental rebalance: the library reads them from the
// committed offsets and keeps its other partitions where they are).
func (s *MemberState) assigned(ps []int32) {
	if len(ps) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range ps {
		s.positions[p] = -1
	}
	logf("%s assigned %v, owns %v", s.name, ps, keysOf(s.positions))
}

// rebalancing drops all the member's partitions (an eager rebalance has begun).
func (s *MemberState) rebalancing() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.positions = map[int32]int64{}
}

// revoked removes partitions.
func (s *MemberState) revoked(ps []int32) {
	if len(ps) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range ps {
		delete(s.positions, p)
	}
	logf("%s lost %v, owns %v", s.name, ps, keysOf(s.positions))
}

// message records one record read.
func (s *MemberState) message(partition int32, offset int64, key, value []byte) {
	if err := s.records.add(partition, offset, key, value); err != nil {
		s.fail(err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.positions[partition]; ok {
		s.positions[partition] = offset + 1
	}
}

func (s *MemberState) fail(err error) {
	logf("%s: %v", s.name, err)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

func (s *MemberState) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *MemberState) owned() map[int32]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int32]int64, len(s.positions))
	for p, o := range s.positions {
		out[p] = o
	}
	return out
}

func keysOf[V any](m map[int32]V) []int32 {
	out := make([]int32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out
}

// Report is the last stdout line.
type Report struct {
	Client      string    `json:"client"`
	Listed      bool      `json:"listed"`
	Described   int       `json:"described"`
	Admin       []string  `json:"admin"`
	Produced    int       `json:"produced"`
	Consumed    int       `json:"consumed"`
	PerKeyOrder bool      `json:"per_key_order"`
	Split       bool      `json:"split"`
	Resumed     int       `json:"resumed"`
	Owned       [][]int32 `json:"owned"`
}

func (r *Report) print() {
	line, err := json.Marshal(r)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(line))
}

// scenario runs the steps on adapter. It returns an error for a failed call and sets
// timedOut when step 4 did not settle in time; the report holds what was seen either way.
func scenario(adapter Adapter, topic, group string, report *Report) (timedOut bool, err error) {
	ctx := context.Background()
	call := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, callTimeout) }
	admin := func(api string) {
		logf("admin call %s done", api)
		report.Admin = append(report.Admin, api)
	}

	// 1. All topics, then TOPIC alone.
	c, cancel := call()
	listing, err := adapter.ListAll(c)
	cancel()
	if err != nil {
		return false, fmt.Errorf("listing all topics: %w", err)
	}
	logf("all-topics listing: %v", listing)
	report.Listed = listing[topic] == partitions
	admin("Metadata")
	c, cancel = call()
	report.Described, err = adapter.Describe(c, topic)
	cancel()
	if err != nil {
		return false, fmt.Errorf("describing %s: %w", topic, err)
	}

	// 2. Admin calls.
	c, cancel = context.WithTimeout(ctx, 2*callTimeout)
	err = adapter.AdminCalls(c, topic+".admin", group, admin)
	cancel()
	if err != nil {
		return false, fmt.Errorf("admin calls: %w", err)
	}

	// 3. 300 keyed records, acks=all (idempotent where the client can).
	c, cancel = call()
	report.Produced, err = adapter.Produce(c, 0, firstRecords)
	cancel()
	if err != nil {
		return false, fmt.Errorf("step 3 produce: %w", err)
	}
	c, cancel = call()
	ends, err := adapter.EndOffsets(c)
	cancel()
	if err != nil {
		return false, fmt.Errorf("end offsets: %w", err)
	}
	logf("step 3: end offsets %v", ends)

	// 4. A group of two.
	records := newRecords()
	var members []Member
	var states []*MemberState
	for n := 1; n <= 2; n++ {
		state := newMemberState(fmt.Sprintf("member-%d", n), records)
		states = append(states, state)
		members = append(members, adapter.Member(state))
	}
	for n, m := range members {
		if n > 0 && secondMemberDelay > 0 {
			logf("starting %s in %v (MATRIX_SECOND_MEMBER_DELAY_MS)", states[n].name, secondMemberDelay)
			time.Sleep(secondMemberDelay)
		}
		if err := m.Start(ctx); err != nil {
			return false, fmt.Errorf("starting a member: %w", err)
		}
	}
	deadline := time.Now().Add(groupTimeout)
	for {
		for _, s := range states {
			if err := s.failure(); err != nil {
				return false, fmt.Errorf("%s: %w", s.name, err)
			}
		}
		owned := []map[int32]int64{states[0].owned(), states[1].owned()}
		if records.size() >= firstRecords && splitOK(owned) && settled(owned, ends) {
			break
		}
		if time.Now().After(deadline) {
			logf("group did not settle in %v: %d records, positions %v", groupTimeout, records.size(), owned)
			timedOut = true
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	finals := []map[int32]int64{states[0].owned(), states[1].owned()}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for n, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, cancel := call()
			defer cancel()
			if errs[n] = m.Commit(c, finals[n]); errs[n] == nil {
				logf("%s committed %v", states[n].name, finals[n])
			}
		}()
	}
	wg.Wait()
	for n, e := range errs {
		if e != nil {
			return timedOut, fmt.Errorf("%s commit: %w", states[n].name, e)
		}
	}
	for n, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[n] = m.Close()
		}()
	}
	wg.Wait()
	for n, e := range errs {
		if e != nil {
			return timedOut, fmt.Errorf("%s close: %w", states[n].name, e)
		}
	}
	report.Consumed = records.size()
	report.Split = splitOK(finals)
	report.Owned = [][]int32{keysOf(finals[0]), keysOf(finals[1])}
	logf("step 4 done: %d records, owned %v", report.Consumed, report.Owned)

	// 5. 50 more, then a fresh member.
	c, cancel = call()
	more, err := adapter.Produce(c, firstRecords, resumedRecords)
	cancel()
	if err != nil {
		return timedOut, fmt.Errorf("step 5 produce: %w", err)
	}
	if more != resumedRecords {
		return timedOut, fmt.Errorf("%d of %d records acknowledged in step 5", more, resumedRecords)
	}
	read := newRecords()
	freshState := newMemberState("fresh member", read)
	fresh := adapter.Member(freshState)
	if err := fresh.Start(ctx); err != nil {
		return timedOut, fmt.Errorf("starting the fresh member: %w", err)
	}
	resumeDeadline := time.Now().Add(resumeTimeout)
	for read.size() < resumedRecords && time.Now().Before(resumeDeadline) && freshState.failure() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	if err := fresh.Close(); err != nil {
		return timedOut, fmt.Errorf("fresh member close: %w", err)
	}
	if err := freshState.failure(); err != nil {
		return timedOut, fmt.Errorf("fresh member: %w", err)
	}
	seen := read.snapshot()
	old, fresh50 := 0, map[int]bool{}
	for _, i := range seen {
		if i < firstRecords {
			old++
		}
		fresh50[i] = true
	}
	if old > 0 {
		logf("the fresh member read %d records of the first %d", old, firstRecords)
		report.Resumed = 0
	} else {
		report.Resumed = len(fresh50)
	}
	logf("step 5: the fresh member read %d records (%d distinct)", len(seen), len(fresh50))
	report.PerKeyOrder = perKeyOrder(records.snapshot(), seen)
	return timedOut, nil
}

// versionOf returns the version of module path in this binary's build info.
func versionOf(path string) string {
	if v, ok := moduleVersions()[path]; ok {
		return v
	}
	return "(unknown version)"
}
