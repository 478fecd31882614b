// The site as the bus tells it (docs/mqtt.md): one plain object, changed only by apply().
// Retained topics (status, door and desk state, occupancy, alarms) replace what was known;
// events go to a bounded stream, each id once (QoS 1 may deliver a message twice).

export const STREAM_MAX = 200;
const SEVERITY = { critical: 0, warning: 1 };

export function createSite(layout) {
  const site = {
    layout, alarms: new Map(), doors: new Map(), areas: new Map(), desks: new Map(), nodes: new Map(),
    events: [], seen: new Set(), sent: new Map(),
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

function stream(site, group, where, payload) {
  if (payload.id) {
    if (site.seen.has(payload.id)) return;
    site.seen.add(payload.id);
  }
  site.events.unshift({ ...payload, group, where });
  while (site.events.length > STREAM_MAX) {
    const gone = site.events.pop();
    if (gone.id) site.seen.delete(gone.id);
  }
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
  if (group === 'alarm' && name) {
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
    stream(site, 'usb', name, payload);
  } else if (group === 'cmd' && leaf === 'result' && extra === undefined) {
    const mine = site.sent.get(payload.id);
    if (!mine) return false; // another console's command
    mine.answer = payload;
  } else {
    return false;
  }
  return true;
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
