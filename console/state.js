// The site as the bus tells it (docs/mqtt.md): one plain object, changed only by apply().
// Retained topics (status, door and desk state, occupancy, alarms, USB exceptions in force, the
// jobs waiting at each print node) replace what was known; events go to a bounded stream, each
// id once (QoS 1 may deliver a message twice), and USB decisions also to a short list of their
// own, which a busy door does not push out.

export const STREAM_MAX = 200;
export const USB_MAX = 30;
const SEVERITY = { critical: 0, warning: 1 };

export function createSite(layout) {
  const site = {
    layout, alarms: new Map(), doors: new Map(), areas: new Map(), desks: new Map(), nodes: new Map(),
    events: [], seen: new Set(), sent: new Map(), usb: [], exceptions: new Map(), print: new Map(),
  };
  for (const name of Object.keys(layout.doors || {})) site.doors.set(name, { state: null, last: null });
  for (const name of Object.keys(layout.desks || {})) site.desks.set(name, null);
  for (const name of layout.areas || []) site.areas.set(name, null);
  for (const name of layout.nodes || []) site.nodes.set(name, null);
  return site;
}

function door(site, name) {
  if (!site.doors.has(name)) site.doors.set(name, { state: null, last: null });
  return site.doors.get(name);
}

// True when the event was new (not a repeat of one already in the stream).
function stream(site, group, where, payload) {
  if (payload.id) {
    if (site.seen.has(payload.id)) return false;
    site.seen.add(payload.id);
  }
  site.events.unshift({ ...payload, group, where });
  while (site.events.length > STREAM_MAX) {
    const gone = site.events.pop();
    if (gone.id) site.seen.delete(gone.id);
  }
  return true;
}

// One message from the bus; ``text`` is its payload as text ('' for an emptied retained topic).
export function apply(site, topic, text) {
  const base = site.layout.base + '/';
  if (!topic.startsWith(base)) return false;
  const [group, name, leaf, extra] = topic.slice(base.length).split('/');
  let payload = null;
  if (text) {
    try { payload = JSON.parse(text); } catch { return false; }
    if (typeof payload !== 'object' || payload === null) return false;
  }
  if (group === 'usb' && leaf === 'exceptions') {
    // Retained, the whole set; emptied (no node there any more): none known.
    if (payload && Array.isArray(payload.exceptions)) site.exceptions.set(name, payload);
    else site.exceptions.delete(name);
  } else if (group === 'print' && leaf === 'queue') {
    // Retained, the whole queue; emptied (no print node there any more): nothing waits there.
    if (payload && Array.isArray(payload.jobs)) site.print.set(name, payload);
    else site.print.delete(name);
  } else if (group === 'alarm' && name) {
    // Emptied when closed; the step before says cleared and acknowledged, and is closed too.
    if (!payload || (payload.cleared && payload.acked_by)) site.alarms.delete(name);
    else site.alarms.set(name, { id: name, ...payload });
  } else if (!payload) {
    return false;
  } else if (group === 'node' && leaf === 'status') {
    site.nodes.set(name, payload);
  } else if (group === 'door' && leaf === 'state') {
    door(site, name).state = payload;
  } else if (group === 'door' && leaf === 'event') {
    door(site, name).last = payload;
    stream(site, 'door', name, payload);
  } else if (group === 'area' && leaf === 'occupancy') {
    site.areas.set(name, payload);
  } else if (group === 'desk' && leaf === 'state') {
    site.desks.set(name, payload);
  } else if (group === 'desk' && leaf === 'event') {
    stream(site, 'desk', name, payload);
  } else if (group === 'usb' && leaf === 'event') {
    if (stream(site, 'usb', name, payload)) {
      site.usb.unshift({ ...payload, host: name });
      site.usb.splice(USB_MAX);
    }
  } else if (group === 'print' && leaf === 'event') {
    stream(site, 'print', name, payload);
  } else if (group === 'cmd' && leaf === 'result' && extra === undefined) {
    const mine = site.sent.get(payload.id);
    if (!mine) return false; // another console's command
    mine.answer = payload;
  } else {
    return false;
  }
  return true;
}

// The exceptions in force on every node, soonest to end first.
export function exceptionsInForce(site) {
  return [...site.exceptions.entries()]
    .flatMap(([host, p]) => p.exceptions.map((e) => ({ ...e, host })))
    .sort((a, b) => String(a.until).localeCompare(String(b.until)));
}

// A time on the bus as milliseconds: RFC 3339 text, or epoch seconds (CUPS's own clock); null
// for anything else.
export function millis(value) {
  if (typeof value === 'number' && Number.isFinite(value)) return value * 1000;
  if (typeof value !== 'string' || !value) return null;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : ms;
}

// The jobs waiting at every print node, each node's oldest first; a job the node lists without a
// time it was submitted goes last, where it cannot pass for the oldest.
export function printQueues(site) {
  return [...site.print.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([node, p]) => ({
    node, printer: p.printer, ts: p.ts, chosen: Number.isInteger(p.chosen) ? p.chosen : null,
    jobs: p.jobs.filter((j) => j && typeof j === 'object').map((j, i) => ({ ...j, i }))
      .sort((a, b) => (millis(a.submitted) ?? Infinity) - (millis(b.submitted) ?? Infinity) || a.i - b.i),
  }));
}

// A print event an officer must notice without being a refusal: a job cancelled for waiting too long.
export function isNotable(e) {
  return isDenied(e) || (e.group === 'print' && e.action === 'expired');
}

// What the stream's "denied only" keeps: a door that said no, a USB device kept off, a desk
// that refused a card or saw another's, a card at a printer that may not release.
const DESK_REFUSED = new Set(['unknown_card', 'no_access', 'tailgating']);
export function isDenied(e) {
  if (e.group === 'door') return e.result === 'denied';
  if (e.group === 'usb') return e.action === 'blocked' || e.action === 'approval_refused';
  if (e.group === 'print') return e.action === 'release_refused';
  return e.kind === 'foreign_card' || (e.kind === 'card_inserted'
    && (DESK_REFUSED.has(e.reason) || String(e.reason || '').startsWith('unreadable')));
}

// The stream through the page's filters: group ('' for all), denied only, and words to find in
// where it happened (door, desk, host), the reader, the subject or the USB device's name.
export function filtered(events, { group, denied, text }) {
  const words = (text || '').trim().toLowerCase();
  return events.filter((e) => (!group || e.group === group) && (!denied || isDenied(e))
    && (!words || [e.where, e.subject, e.reader, e.device && e.device.name]
      .some((v) => v && String(v).toLowerCase().includes(words))));
}

// The desk map: each desk's [row, column] from the config; those without one flow after the
// placed ones, row by row, as many to a row as the map is wide.
export function deskPlaces(site) {
  const layout = site.layout.desks || {};
  const names = [...site.desks.keys()];
  const placed = names.filter((n) => layout[n] && layout[n].position);
  const columns = Math.max(1, ...placed.map((n) => layout[n].position[1]), placed.length ? 1 : Math.min(names.length, 6));
  let row = Math.max(0, ...placed.map((n) => layout[n].position[0]));
  let column = columns;
  return names.map((name) => {
    if (layout[name] && layout[name].position) return { name, row: layout[name].position[0], column: layout[name].position[1] };
    if (column >= columns) { row += 1; column = 0; }
    column += 1;
    return { name, row, column };
  });
}

export function openAlarms(site) {
  return [...site.alarms.values()].sort((a, b) =>
    (SEVERITY[a.severity] ?? 9) - (SEVERITY[b.severity] ?? 9) || String(a.raised).localeCompare(String(b.raised)));
}

// Offline nodes first, then those not heard from, then the online ones; by name within each.
export function nodesOfflineFirst(site) {
  const rank = (s) => (s === null ? 1 : s.state === 'offline' ? 0 : 2);
  return [...site.nodes.entries()].sort(([a, s], [b, t]) => rank(s) - rank(t) || a.localeCompare(b));
}

// The node that runs a command about an alarm: its id starts with the node's name.
export function alarmNode(alarmId) {
  return alarmId.split('.')[0];
}

export function doorNode(site, name) {
  const configured = site.layout.doors && site.layout.doors[name];
  return configured ? configured.node : (door(site, name).last || {}).node || null;
}
