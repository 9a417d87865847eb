// A stock Yjs editor (yjs + y-websocket + ws) driven by the test suite.
//
//   node client.mjs ws://127.0.0.1:PORT/ws PROJECT_ID [ORIGIN]
//
// ORIGIN, when given, is sent as the Origin header of every connection, as a browser
// sends its page's origin (the ws package sends none unless told). The environment
// variable COLLAB_TOKEN, when set, is sent as the provider's params: { token }.
//
// Reads one JSON command per line on stdin and answers with one JSON line on stdout:
//   {"cmd": "edit", "count": N, "seed": S}  N random edits of the project layout
//   {"cmd": "dump"}                          the document as JSON
//   {"cmd": "quit"}
// It prints what the provider reports:
//   {"event": "synced"}                        synced with the server
//   {"event": "status", "status": S}           connecting, connected, disconnected
//   {"event": "closed", "code": C, "reason": R}  a connection closed (code null: by the client)
//   {"event": "stopped", "code": C, "reason": R} the provider gave up reconnecting
import * as readline from 'node:readline'
import WebSocket from 'ws'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'

const [serverUrl, room, origin] = process.argv.slice(2)
const PageWebSocket = origin
  ? class extends WebSocket {
    constructor (url, protocols) { super(url, protocols, { origin }) }
  }
  : WebSocket
const doc = new Y.Doc()
// Not connected yet, so that the first 'connecting' status is reported too.
const provider = new WebsocketProvider(serverUrl, room, doc, {
  WebSocketPolyfill: PageWebSocket,
  disableBc: true,
  connect: false,
  params: process.env.COLLAB_TOKEN ? { token: process.env.COLLAB_TOKEN } : {}
})
const out = (value) => process.stdout.write(JSON.stringify(value) + '\n')

provider.on('sync', (synced) => { if (synced) out({ event: 'synced' }) })
provider.on('status', ({ status }) => out({ event: 'status', status }))
provider.on('connection-close', (event) => out({
  event: 'closed', code: event ? event.code : null, reason: event ? event.reason : null
}))
provider.on('closed', ({ code, reason }) => out({ event: 'stopped', code, reason }))
provider.connect()

// mulberry32: a small seeded generator, so runs can be repeated
const random = (seed) => () => {
  seed |= 0; seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const edit = (rng) => {
  const meta = doc.getMap('meta')
  const tracks = doc.getMap('tracks')
  const order = doc.getArray('track_order')
  const kind = Math.floor(rng() * 5)
  const keys = Array.from(tracks.keys()).sort()
  if (kind === 0 || keys.length === 0) {
    const id = `node-${Math.floor(rng() * 1e6)}`
    doc.transact(() => {
      const track = new Y.Map()
      track.set('name', id)
      track.set('volume_db', 0)
      track.set('notes', new Y.Array())
      tracks.set(id, track)
      order.push([id])
    })
  } else if (kind === 1) {
    meta.set('tempo', 60 + Math.floor(rng() * 120))
  } else if (kind === 2) {
    tracks.get(keys[Math.floor(rng() * keys.length)]).set('volume_db', -Math.floor(rng() * 60))
  } else if (kind === 3) {
    const notes = tracks.get(keys[Math.floor(rng() * keys.length)]).get('notes')
    if (notes instanceof Y.Array) {
      const note = new Y.Map()
      note.set('pitch', Math.floor(rng() * 128))
      note.set('start', 0)
      notes.push([note])
    }
  } else if (order.length > 0) {
    order.delete(Math.floor(rng() * order.length), 1)
  }
}

const dump = () => ({
  meta: doc.getMap('meta').toJSON(),
  tracks: doc.getMap('tracks').toJSON(),
  track_order: doc.getArray('track_order').toJSON(),
  sections: doc.getArray('sections').toJSON()
})

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

const lines = readline.createInterface({ input: process.stdin })
for await (const line of lines) {
  const command = JSON.parse(line)
  if (command.cmd === 'edit') {
    const rng = random(command.seed)
    for (let i = 0; i < command.count; i++) {
      edit(rng)
      await sleep(2)
    }
    out({ event: 'edited', count: command.count })
  } else if (command.cmd === 'dump') {
    out({ event: 'dump', synced: provider.synced, document: dump() })
  } else if (command.cmd === 'quit') {
    break
  }
}
provider.destroy()
process.exit(0)
