#!/usr/bin/env bash
# Installs the Node.js clients of package.json into node_modules: kafkajs and
# @platformatic/kafka, pinned (the newest releases that run on the Node.js of the machine;
# @platformatic/kafka 2.x needs Node.js 22.22 or 24.6). Idempotent: npm only changes what
# differs from package.json.
set -euo pipefail
cd "$(dirname "$0")"
npm install --no-audit --no-fund
