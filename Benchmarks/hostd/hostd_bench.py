#!/usr/bin/env python3
"""Measurements of a running vmhostd through its local API socket (stdlib only).

Usage: hostd_bench.py SOCKET COMMAND [ARGS]
  list-latency N            N GET /v1/vms on one keep-alive connection: p50/p99 in ms
  power-on-latency VM N     N power-ons of VM: request -> first guest instruction (CLOCK_MONOTONIC), ms
  disk VM FIRST LAST        power VM on, wait for it to power off, print the ns between markers FIRST and LAST
  rss                       vmhostd's resident memory (VmRSS) in MiB
"""
import http.client
import json
import os
import socket
import statistics
import sys
import time


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("agent", timeout=600)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def call(connection, method, path, body=None):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = connection.getresponse()
    data = response.read()
    if response.status >= 400:
        raise SystemExit(f"{method} {path}: {response.status} {data[:300]!r}")
    return json.loads(data) if data else None


def wait_task(connection, task):
    while task["state"] in ("queued", "running"):
        task = call(connection, "GET", f"/v1/tasks/{task['id']}?waitSeconds=30")
    if task["state"] != "success":
        raise SystemExit(f"task {task['operation']} failed: {task.get('error')}")
    return task


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def list_latency(connection, count):
    samples = []
    for _ in range(count):
        start = time.perf_counter_ns()
        vms = call(connection, "GET", "/v1/vms")
        samples.append((time.perf_counter_ns() - start) / 1e6)
    print(f"list: {len(vms)} VMs, {count} requests, p50 {percentile(samples, 0.5):.2f} ms, p99 {percentile(samples, 0.99):.2f} ms")


def power_on_latency(connection, vm, count):
    samples = []
    for _ in range(count):
        start = time.monotonic_ns()
        wait_task(connection, call(connection, "POST", f"/v1/vms/{vm}/power-on"))
        while True:
            detail = call(connection, "GET", f"/v1/vms/{vm}")
            first = detail.get("firstInstructionNanoseconds")
            if first:
                samples.append((first - start) / 1e6)
                break
            time.sleep(0.001)
        wait_task(connection, call(connection, "POST", f"/v1/vms/{vm}/power-off"))
    print(f"power-on to first guest instruction: {count} runs, median {statistics.median(samples):.1f} ms, "
          f"min {min(samples):.1f} ms, max {max(samples):.1f} ms")


def disk(connection, vm, first, last):
    wait_task(connection, call(connection, "POST", f"/v1/vms/{vm}/power-on"))
    while call(connection, "GET", f"/v1/vms/{vm}")["summary"]["powerState"] not in ("poweredOff", "crashed"):
        time.sleep(0.05)
    detail = call(connection, "GET", f"/v1/vms/{vm}")
    if detail["summary"]["powerState"] != "poweredOff" or detail.get("guestStatus") not in (0, None):
        raise SystemExit(f"{vm} ended {detail['summary']['powerState']} status {detail.get('guestStatus')}")
    markers = {m["code"]: m["monotonicNanoseconds"] for m in detail.get("markers", [])}
    print(markers[int(last, 0)] - markers[int(first, 0)])


def rss():
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"vmhostd" not in f.read().split(b"\0")[0]:
                    continue
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        print(f"{int(line.split()[1]) / 1024:.1f}")
                        return
        except OSError:
            continue


def main():
    socket_path, command, *arguments = sys.argv[1:]
    if command == "rss":
        return rss()
    connection = UnixConnection(socket_path)
    if command == "list-latency":
        list_latency(connection, int(arguments[0]))
    elif command == "power-on-latency":
        power_on_latency(connection, arguments[0], int(arguments[1]))
    elif command == "disk":
        disk(connection, *arguments)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
