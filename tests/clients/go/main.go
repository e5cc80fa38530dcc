// The matrix scenario of tests/clients/README.md with the Go clients:
//
//	matrix CLIENT BOOTSTRAP TOPIC GROUP
//
// CLIENT is `franz` (franz-go: kgo and kadm), `sarama` (IBM/sarama) or `kafkago`
// (segmentio/kafka-go), at the versions go.mod pins (setup.sh also builds the binary with
// the newest releases). The last stdout line is the report; diagnostics go to stderr.
//
//	matrix eos BOOTSTRAP PREFIX
//
// runs franz-go's transactional session instead (txn.go, for tests/transactions.rs).
package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"time"
)

var clients = map[string]func(bootstrap, topic, group string) (Adapter, error){
	"franz":   newFranz,
	"sarama":  newSarama,
	"kafkago": newKafkaGo,
}

// moduleVersions maps each module linked into the binary to its version.
func moduleVersions() map[string]string {
	out := map[string]string{}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Replace != nil {
				dep = dep.Replace
			}
			out[dep.Path] = dep.Version
		}
	}
	return out
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "eos" {
		os.Exit(eosMain(os.Args[2:]))
	}
	if len(os.Args) != 5 || clients[os.Args[1]] == nil {
		fmt.Fprintf(os.Stderr, "usage: matrix franz|sarama|kafkago BOOTSTRAP TOPIC GROUP\n")
		os.Exit(2)
	}
	client, bootstrap, topic, group := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	adapter, err := clients[client](bootstrap, topic, group)
	if err != nil {
		logf("failed: %v", err)
		os.Exit(1)
	}
	report := &Report{Client: adapter.Client(), Admin: []string{}, Owned: [][]int32{}}
	timedOut, err := scenario(adapter, topic, group, report)
	if err != nil {
		logf("failed: %v", err)
		logf("report so far: %+v", *report)
		os.Exit(1)
	}
	adapter.Close()
	logf("done in %.1f s", time.Since(started).Seconds())
	report.print()
	if timedOut {
		os.Exit(1)
	}
}
