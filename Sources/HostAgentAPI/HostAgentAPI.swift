// The host agent's HTTP API: types, client and server protocol generated at build time by
// swift-openapi-generator from openapi.yaml (the committed spec is the contract).
