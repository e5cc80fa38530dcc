"""Two confluent-kafka members of one group with a given assignor split a 4-partition topic
without sharing a partition; when one leaves, the other gets all four. Prints two JSON lines:
the split and the assignment after the close."""
import json
import sys
import threading
import time

from confluent_kafka import Consumer

bootstrap, topic, group, strategy = sys.argv[1:5]


def member(name, results, stop):
    consumer = Consumer({
        'bootstrap.servers': bootstrap,
        'group.id': group,
        'partition.assignment.strategy': strategy,
        'session.timeout.ms': 6000,
        'auto.offset.reset': 'earliest',
    })
    consumer.subscribe([topic])
    while not stop.is_set():
        consumer.poll(0.2)
        results[name] = sorted(p.partition for p in consumer.assignment())
    consumer.close()


results = {}
stop_a, stop_b = threading.Event(), threading.Event()
a = threading.Thread(target=member, args=('a', results, stop_a))
a.start()
time.sleep(1)
b = threading.Thread(target=member, args=('b', results, stop_b))
b.start()
deadline = time.time() + 30
while time.time() < deadline:
    if results.get('a') and results.get('b') and sorted(results['a'] + results['b']) == [0, 1, 2, 3]:
        break
    time.sleep(0.1)
print(json.dumps({'a': results.get('a'), 'b': results.get('b')}), flush=True)
stop_b.set()
b.join()
deadline = time.time() + 30
while time.time() < deadline and results.get('a') != [0, 1, 2, 3]:
    time.sleep(0.1)
print(json.dumps({'a': results.get('a')}), flush=True)
stop_a.set()
a.join()
