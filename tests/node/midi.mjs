// @tonejs/midi (a MIDI library we did not write), for tests/test_midi.py:
//   node midi.mjs FILE               prints what the file holds, as JSON
//   node midi.mjs write FILE SPEC    writes FILE from SPEC (JSON: bpm, timeSignature,
//                                    name, tracks [{name, channel, notes [{midi, ticks,
//                                    durationTicks, velocity 0-127}]}])
import { readFileSync, writeFileSync } from "node:fs";
import midiPackage from "@tonejs/midi";

const { Midi } = midiPackage;

if (process.argv[2] === "write") {
  const spec = JSON.parse(readFileSync(process.argv[4], "utf8"));
  const written = new Midi();
  written.header.name = spec.name ?? "";
  written.header.setTempo(spec.bpm);
  written.header.timeSignatures.push({ ticks: 0, timeSignature: spec.timeSignature });
  written.header.update();
  for (const track of spec.tracks) {
    const out = written.addTrack();
    out.name = track.name;
    out.channel = track.channel;
    for (const note of track.notes) {
      out.addNote({ midi: note.midi, ticks: note.ticks, durationTicks: note.durationTicks,
        velocity: note.velocity / 127 });
    }
  }
  writeFileSync(process.argv[3], Buffer.from(written.toArray()));
  process.exit(0);
}

const midi = new Midi(readFileSync(process.argv[2]));
console.log(JSON.stringify({
  ppq: midi.header.ppq,
  name: midi.header.name,
  tempos: midi.header.tempos.map((t) => ({ ticks: t.ticks, bpm: t.bpm })),
  timeSignatures: midi.header.timeSignatures.map((t) => ({ ticks: t.ticks, value: t.timeSignature })),
  tracks: midi.tracks.map((track) => ({
    name: track.name,
    channel: track.channel,
    notes: track.notes.map((n) => ({ midi: n.midi, ticks: n.ticks, durationTicks: n.durationTicks,
      velocity: Math.round(n.velocity * 127) })),
    controlChanges: Object.fromEntries(Object.entries(track.controlChanges)
      .map(([number, changes]) => [number, changes.map((c) => Math.round(c.value * 127))])),
  })),
}));
