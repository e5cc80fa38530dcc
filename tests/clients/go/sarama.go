package main

// IBM/sarama: ClusterAdmin for the admin calls (and the Client's GetOffset for
// ListOffsets), an idempotent SyncProducer (acks=all, one request in flight, sarama's
// default hash partitioner: FNV-1a, not murmur2, so other partitions than the Java client
// but one per key), and ConsumerGroup members with sarama's default balance strategy,
// range (eager rebalances: after each one a member reads its partitions from the committed
// offsets). Config.Version is sarama's newest (MaxVersion); sarama lowers each request to
// the range the broker's ApiVersions answer allows.

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

type saramaAdapter struct {
	bootstrap, topic, group string
	client                  sarama.Client
	admin                   sarama.ClusterAdmin
	producer                sarama.SyncProducer
}

func saramaConfig(clientID string) *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.MaxVersion
	cfg.ClientID = clientID
	cfg.Net.MaxOpenRequests = 1
	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Retry.Max = 5
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	cfg.Consumer.MaxWaitTime = fetchMaxWait
	cfg.Consumer.Group.Session.Timeout = sessionTimeout
	cfg.Consumer.Group.Heartbeat.Interval = heartbeatInterval
	cfg.Admin.Timeout = callTimeout
	return cfg
}

func newSarama(bootstrap, topic, group string) (Adapter, error) {
	if os.Getenv("SARAMA_DEBUG") != "" {
		sarama.Logger = log.New(os.Stderr, "sarama: ", log.Lmicroseconds)
	}
	client, err := sarama.NewClient([]string{bootstrap}, saramaConfig("fjord-matrix"))
	if err != nil {
		return nil, fmt.Errorf("NewClient: %w", err)
	}
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		return nil, fmt.Errorf("NewClusterAdminFromClient: %w", err)
	}
	return &saramaAdapter{bootstrap: bootstrap, topic: topic, group: group, client: client, admin: admin}, nil
}

func (s *saramaAdapter) Client() string {
	return fmt.Sprintf("sarama %s (protocol of Kafka %s)", versionOf("github.com/IBM/sarama"), sarama.MaxVersion)
}

func (s *saramaAdapter) ListAll(ctx context.Context) (map[string]int, error) {
	// ListTopics: Metadata for all topics, then one DescribeConfigs for all of them.
	topics, err := s.admin.ListTopics()
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for name, t := range topics {
		out[name] = int(t.NumPartitions)
	}
	return out, nil
}

func (s *saramaAdapter) Describe(ctx context.Context, topic string) (int, error) {
	described, err := s.admin.DescribeTopics([]string{topic})
	if err != nil {
		return 0, err
	}
	for _, t := range described {
		if t.Name == topic {
			if t.Err != sarama.ErrNoError {
				return 0, t.Err
			}
			return len(t.Partitions), nil
		}
	}
	return 0, fmt.Errorf("DescribeTopics(%s) did not return it", topic)
}

func (s *saramaAdapter) AdminCalls(ctx context.Context, extra, group string, done func(string)) error {
	if err := s.admin.CreateTopic(extra, &sarama.TopicDetail{NumPartitions: adminPartitions, ReplicationFactor: 1}, false); err != nil {
		return fmt.Errorf("CreateTopic(%s): %w", extra, err)
	}
	done("CreateTopics")
	entries, err := s.admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: extra})
	if err != nil {
		return fmt.Errorf("DescribeConfig(%s): %w", extra, err)
	}
	if len(entries) == 0 {
		return fmt.Errorf("DescribeConfig(%s) returned no configs", extra)
	}
	logf("%s has %d configs", extra, len(entries))
	done("DescribeConfigs")
	if err := s.admin.DeleteTopic(extra); err != nil {
		return fmt.Errorf("DeleteTopic(%s): %w", extra, err)
	}
	done("DeleteTopics")

	groups, err := s.admin.ListConsumerGroups()
	if err != nil {
		return fmt.Errorf("ListConsumerGroups: %w", err)
	}
	logf("groups: %v", groups)
	done("ListGroups")
	described, err := s.admin.DescribeConsumerGroups([]string{group})
	if err != nil {
		return fmt.Errorf("DescribeConsumerGroups(%s): %w", group, err)
	}
	for _, g := range described {
		if g.Err != sarama.ErrNoError {
			return fmt.Errorf("DescribeConsumerGroups(%s): %w", group, g.Err)
		}
		logf("group %s before step 4: %s", g.GroupId, g.State)
	}
	done("DescribeGroups")
	if _, err := s.EndOffsets(ctx); err != nil {
		return fmt.Errorf("GetOffset(%s, newest): %w", s.topic, err)
	}
	done("ListOffsets")
	fetched, err := s.admin.ListConsumerGroupOffsets(group, map[string][]int32{s.topic: {0, 1, 2}})
	if err != nil {
		return fmt.Errorf("ListConsumerGroupOffsets(%s): %w", group, err)
	}
	if fetched.Err != sarama.ErrNoError {
		return fmt.Errorf("ListConsumerGroupOffsets(%s): %w", group, fetched.Err)
	}
	done("OffsetFetch")

	// A group of no members, made by committing an offset for it with an OffsetManager
	// (sarama's admin has no commit), then deleted.
	scratch := group + ".admin"
	if err := s.standaloneCommit(scratch, 0, 0); err != nil {
		return fmt.Errorf("commit for %s: %w", scratch, err)
	}
	done("OffsetCommit")
	if err := s.admin.DeleteConsumerGroup(scratch); err != nil {
		return fmt.Errorf("DeleteConsumerGroup(%s): %w", scratch, err)
	}
	done("DeleteGroups")
	return nil
}

// standaloneCommit commits offset for partition of the topic as group, outside any
// generation, and checks with OffsetFetch that it is there.
func (s *saramaAdapter) standaloneCommit(group string, partition int32, offset int64) error {
	om, err := sarama.NewOffsetManagerFromClient(group, s.client)
	if err != nil {
		return err
	}
	pom, err := om.ManagePartition(s.topic, partition)
	if err != nil {
		om.Close()
		return err
	}
	pom.MarkOffset(offset, "")
	om.Commit()
	// Closing the manager releases the partition's manager, which closes its Errors.
	pom.AsyncClose()
	commitErr := om.Close()
	for e := range pom.Errors() {
		commitErr = e
	}
	if commitErr != nil {
		return commitErr
	}
	fetched, err := s.admin.ListConsumerGroupOffsets(group, map[string][]int32{s.topic: {partition}})
	if err != nil {
		return err
	}
	if b := fetched.GetBlock(s.topic, partition); b == nil || b.Err != sarama.ErrNoError || b.Offset != offset {
		return fmt.Errorf("after the commit OffsetFetch returns %+v", b)
	}
	return nil
}

func (s *saramaAdapter) ensureProducer() error {
	if s.producer != nil {
		return nil
	}
	producer, err := sarama.NewSyncProducer([]string{s.bootstrap}, saramaConfig("fjord-matrix-producer"))
	if err != nil {
		return fmt.Errorf("NewSyncProducer: %w", err)
	}
	s.producer = producer
	return nil
}

func (s *saramaAdapter) Produce(ctx context.Context, first, count int) (int, error) {
	if err := s.ensureProducer(); err != nil {
		return 0, err
	}
	acknowledged := 0
	for start := first; start < first+count; start += sendBatch {
		var batch []*sarama.ProducerMessage
		for i := start; i < min(start+sendBatch, first+count); i++ {
			key, value := record(i)
			batch = append(batch, &sarama.ProducerMessage{Topic: s.topic, Key: sarama.ByteEncoder(key), Value: sarama.ByteEncoder(value)})
		}
		if err := s.producer.SendMessages(batch); err != nil {
			var errs sarama.ProducerErrors
			if errors.As(err, &errs) && len(errs) > 0 {
				return acknowledged, fmt.Errorf("%d of %d failed, first: %w", len(errs), len(batch), errs[0].Err)
			}
			return acknowledged, err
		}
		acknowledged += len(batch)
	}
	return acknowledged, nil
}

func (s *saramaAdapter) EndOffsets(ctx context.Context) (map[int32]int64, error) {
	out := map[int32]int64{}
	for p := int32(0); p < partitions; p++ {
		o, err := s.client.GetOffset(s.topic, p, sarama.OffsetNewest)
		if err != nil {
			return nil, fmt.Errorf("partition %d: %w", p, err)
		}
		out[p] = o
	}
	return out, nil
}

func (s *saramaAdapter) Close() {
	if s.producer != nil {
		if err := s.producer.Close(); err != nil {
			logf("closing the producer: %v", err)
		}
	}
	if err := s.admin.Close(); err != nil {
		logf("closing the admin: %v", err)
	}
}

type saramaMember struct {
	s      *saramaAdapter
	state  *MemberState
	cg     sarama.ConsumerGroup
	cancel context.CancelFunc
	done   sync.WaitGroup

	mu      sync.Mutex
	session sarama.ConsumerGroupSession
}

func (s *saramaAdapter) Member(state *MemberState) Member {
	return &saramaMember{s: s, state: state}
}

func (m *saramaMember) Start(ctx context.Context) error {
	cg, err := sarama.NewConsumerGroup([]string{m.s.bootstrap}, m.s.group, saramaConfig("fjord-matrix-"+m.state.name))
	if err != nil {
		return err
	}
	m.cg = cg
	ctx, m.cancel = context.WithCancel(ctx)
	m.done.Add(2)
	go func() {
		defer m.done.Done()
		for ctx.Err() == nil {
			if err := cg.Consume(ctx, []string{m.s.topic}, m); err != nil {
				if !errors.Is(err, sarama.ErrClosedConsumerGroup) && ctx.Err() == nil {
					m.state.fail(fmt.Errorf("Consume: %w", err))
				}
				return
			}
		}
	}()
	go func() {
		defer m.done.Done()
		for err := range cg.Errors() {
			m.state.fail(err)
		}
	}()
	return nil
}

// Setup, Cleanup and ConsumeClaim make saramaMember a sarama.ConsumerGroupHandler.
func (m *saramaMember) Setup(session sarama.ConsumerGroupSession) error {
	m.mu.Lock()
	m.session = session
	m.mu.Unlock()
	m.state.joined(session.Claims()[m.s.topic])
	return nil
}

func (m *saramaMember) Cleanup(session sarama.ConsumerGroupSession) error {
	m.mu.Lock()
	m.session = nil
	m.mu.Unlock()
	m.state.rebalancing()
	return nil
}

func (m *saramaMember) ConsumeClaim(session sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			m.state.message(msg.Partition, msg.Offset, msg.Key, msg.Value)
		case <-session.Context().Done():
			return nil
		}
	}
}

func (m *saramaMember) Commit(ctx context.Context, positions map[int32]int64) error {
	marked := map[int32]int64{}
	for p, pos := range positions {
		if pos >= 0 {
			marked[p] = pos
		}
	}
	if len(marked) == 0 {
		return nil
	}
	m.mu.Lock()
	session := m.session
	m.mu.Unlock()
	if session == nil {
		return fmt.Errorf("no session to commit %v in", marked)
	}
	for p, pos := range marked {
		session.MarkOffset(m.s.topic, p, pos, "")
	}
	session.Commit()
	// Commit reports failures on the group's Errors channel only: check that the offsets
	// are there.
	var ps []int32
	for p := range marked {
		ps = append(ps, p)
	}
	fetched, err := m.s.admin.ListConsumerGroupOffsets(m.s.group, map[string][]int32{m.s.topic: ps})
	if err != nil {
		return fmt.Errorf("checking the commit: %w", err)
	}
	for p, pos := range marked {
		if b := fetched.GetBlock(m.s.topic, p); b == nil || b.Err != sarama.ErrNoError || b.Offset != pos {
			return fmt.Errorf("committed %d on partition %d, OffsetFetch returns %+v", pos, p, b)
		}
	}
	return m.state.failure()
}

func (m *saramaMember) Close() error {
	if m.cancel == nil {
		return nil
	}
	m.cancel()
	closed := make(chan error, 1)
	go func() { closed <- m.cg.Close() }()
	select {
	case err := <-closed:
		m.done.Wait()
		return err
	case <-time.After(callTimeout):
		return fmt.Errorf("ConsumerGroup.Close did not return in %v", callTimeout)
	}
}
