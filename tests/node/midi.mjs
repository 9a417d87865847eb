// Reads a Standard MIDI File with @tonejs/midi (a parser we did not write) and prints
// what it found as JSON: tests/test_midi.py compares it with the project document.
import { readFileSync } from "node:fs";
import midiPackage from "@tonejs/midi";

const { Midi } = midiPackage;
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
