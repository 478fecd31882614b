// What the page shows, in the order an officer needs it: open alarms, doors, occupancy with the
// muster list (the one part that prints), the desk map, USB decisions and exceptions, the print
// jobs waiting for a supervisor, the event stream with its filters, the nodes. Pure rendering of the site (state.js) and the page's own
// state (ui); everything that acts goes through ``actions`` (app.js).
import { h } from './vendor/preact/preact.mjs';
import { useState } from './vendor/preact/hooks.mjs';
import htm from './vendor/htm/htm.mjs';
import { LANGS, localTime, span } from './i18n.js';
import {
  alarmNode, deskPlaces, doorNode, exceptionsInForce, filtered, isDenied, isNotable, millis, nodesOfflineFirst,
  openAlarms, printQueues,
} from './state.js';

const html = htm.bind(h);
const MODES = ['normal', 'lockdown', 'free', 'emergency'];
const DESK_STATES = ['vacant', 'in_use', 'away', 'locked', 'unlocked'];
const GROUPS = ['door', 'desk', 'usb', 'print'];

function word(t, value) {
  return value === null || value === undefined ? '—' : t(String(value));
}

function Header({ site, ui, t, actions }) {
  return html`<header>
    <h1>${t('title')} <small>${site.layout.site}</small></h1>
    <span class="conn ${ui.conn}" data-test="conn" data-state=${ui.conn}
      title=${ui.connError || ''}>${t(ui.conn)}</span>
    <span class="langs">${LANGS.map((lang) => html`<button data-test=${'lang-' + lang}
      class=${lang === ui.lang ? 'on' : ''} onClick=${() => actions.setLang(lang)}>${lang === 'ja' ? '日本語' : 'English'}</button>`)}</span>
  </header>`;
}

// Shown while the broker is not reached: a broker that wants a user (the ACL's `officer`).
function BrokerLogin({ ui, t, actions }) {
  const [user, setUser] = useState('');
  const [password, setPassword] = useState('');
  if (ui.conn !== 'disconnected') return null;
  if (!ui.refused) {
    return html`<p class="notice readonly" data-test="unreachable">${t('unreachable', { url: ui.broker })}</p>`;
  }
  return html`<form class="notice readonly keyform" data-test="login"
    onSubmit=${(e) => { e.preventDefault(); actions.login(user, password); }}>
    ${ui.connError && html`<span class="error">${ui.connError}</span>`}
    <label>${t('broker_user')} <input value=${user} onInput=${(e) => setUser(e.target.value)} autocomplete="username" /></label>
    <label>${t('broker_password')} <input type="password" value=${password} autocomplete="current-password"
      onInput=${(e) => setPassword(e.target.value)} /></label>
    <button disabled=${!user}>${t('login')}</button></form>`;
}

function KeyBox({ ui, t, actions }) {
  const [name, setName] = useState('');
  const [text, setText] = useState('');
  if (!ui.signing) return html`<p class="notice readonly" data-test="readonly">${t('no_crypto')} ${t('readonly')}</p>`;
  if (ui.key) {
    return html`<p class="notice key" data-test="key">${t('signing_as')}: <b data-test="key-name-shown">${ui.key.name}</b>
      (${t('public_key')} <code>${ui.key.publicKey}</code>)
      <button onClick=${() => actions.forgetKey()}>${t('forget_key')}</button></p>`;
  }
  const file = async (e) => {
    const f = e.target.files[0];
    if (!f) return;
    setText(await f.text());
    if (!name) setName(f.name.split('.')[0].toLowerCase());
  };
  return html`<div class="notice readonly" data-test="readonly"><p>${t('readonly')}</p>
    <form class="keyform" onSubmit=${(e) => { e.preventDefault(); actions.importKey(text, name); }}>
      <label>${t('key_file')} <input type="file" data-test="key-file" onChange=${file} /></label>
      <label>${t('key_name')} <input data-test="key-name" value=${name} onInput=${(e) => setName(e.target.value)} /></label>
      <button data-test="key-import" disabled=${!text || !name}>${t('import_key')}</button>
      ${ui.keyError && html`<span class="error" data-test="key-error">${ui.keyError}</span>`}
    </form></div>`;
}

function CommandLog({ ui, t }) {
  if (!ui.log.length) return null;
  return html`<section class="log"><h2>${t('commands')}</h2><ul>${ui.log.slice(0, 5).map((c) => {
    const state = c.error ? 'refused' : !c.answer ? 'waiting' : c.answer.ok ? 'ok' : 'refused';
    const why = c.error ? t(c.error) : c.answer && !c.answer.ok ? c.answer.error : '';
    return html`<li data-test="result" data-state=${state} data-op=${c.op} class=${state}>
      <b>${c.op}</b> ${c.label} @ ${c.node}: ${t(state)}${why ? ` — ${why}` : ''}</li>`;
  })}</ul></section>`;
}

function Alarms({ site, ui, t, ask }) {
  const alarms = openAlarms(site);
  const tz = site.layout.timezone;
  return html`<section class="alarms"><h2>${t('alarms')} (${alarms.length})</h2>
    ${alarms.length === 0 ? html`<p class="quiet">${t('no_alarms')}</p>` : html`<div class="wide"><table><thead><tr>
      <th>${t('severity')}</th><th>${t('kind')}</th><th>${t('source')}</th><th>${t('raised')}</th>
      <th>${t('cleared')}</th><th>${t('subject')}</th><th></th></tr></thead><tbody>
      ${alarms.map((a) => html`<tr data-test="alarm" data-id=${a.id} class=${'sev-' + a.severity}>
        <td><span class="badge">${word(t, a.severity)}</span></td><td>${word(t, a.kind)}</td><td>${a.source}</td>
        <td>${localTime(a.raised, ui.lang, tz)}</td><td data-test="cleared">${localTime(a.cleared, ui.lang, tz)}</td>
        <td><code>${a.subject || '—'}</code></td>
        <td>${a.acked_by ? html`<span data-test="acked">${t('acked')}: ${a.acked_by}</span>`
          : html`<button data-test="ack" onClick=${() => ask({
            text: t('confirm_ack', { id: a.id }), note: true,
            run: (note) => ui.actions.ack({ id: a.id, node: alarmNode(a.id), raised: a.raised }, note),
          })}>${t('acknowledge')}</button>`}</td></tr>`)}
      </tbody></table></div>`}</section>`;
}

function DoorTile({ site, name, ui, t, ask }) {
  const { state, last } = site.doors.get(name);
  const node = doorNode(site, name);
  const [mode, setMode] = useState('normal');
  const s = state || {};
  const tz = site.layout.timezone;
  return html`<div class="tile door ${s.alarm ? 'alarmed' : ''}" data-test="door" data-door=${name}>
    <h3>${name} <small>${node || ''}</small></h3>
    <dl>
      <dt>${t('lock')}</dt><dd data-test="lock" data-lock=${s.lock}>${word(t, s.lock)}</dd>
      <dt>${t('mode')}</dt><dd data-test="mode" data-mode=${s.mode}>${word(t, s.mode)}</dd>
      <dt>${t('contact')}</dt><dd data-test="contact">${word(t, s.contact)}</dd>
      <dt>${t('alarm')}</dt><dd>${word(t, s.alarm)}</dd>
      <dt>${t('last_event')}</dt><dd>${last ? html`${localTime(last.ts, ui.lang, tz)} ${word(t, last.direction)} ${
        word(t, last.result)} (${last.reason})` : '—'}</dd>
    </dl>
    ${node && html`<div class="acts">
      <button data-test="unlock" onClick=${() => ask({ text: t('confirm_unlock', { door: name }),
        run: () => ui.actions.unlock(name, node) })}>${t('unlock')}</button>
      <select data-test="mode-select" value=${mode} onChange=${(e) => setMode(e.target.value)}>
        ${MODES.map((m) => html`<option value=${m}>${t(m)}</option>`)}</select>
      <button data-test="mode-set" onClick=${() => ask({ text: t('confirm_mode', { door: name, mode: t(mode) }),
        run: () => ui.actions.setMode(name, node, mode) })}>${t('set_mode')}</button>
    </div>`}
  </div>`;
}

// Occupancy, and the muster list: who is inside each area, as pseudonyms (names with
// publish_names), the count, and the time it was printed. Printed alone (style.css, @media print).
function Areas({ site, ui, t }) {
  const tz = site.layout.timezone;
  const areas = [...site.areas.entries()];
  const total = areas.reduce((n, [, o]) => n + (o ? o.count : 0), 0);
  return html`<section class="areas muster" data-test="muster">
    <div class="heading"><h2>${t('areas')}</h2>
      <button data-test="print-muster" class="noprint" onClick=${() => ui.actions.print()}>${t('print_muster')}</button></div>
    <p class="printed"><b>${t('muster_list')}</b> — ${site.layout.site} — ${t('printed_at')} <span
      data-test="muster-time">${localTime(new Date().toISOString(), ui.lang, tz)}</span> (${tz || 'UTC'}) — ${
      t('total_inside')}: <b data-test="muster-total">${total}</b></p>
    ${ui.conn !== 'connected' ? html`<p class="stale">${t('muster_stale')}</p>` : null}
    <div class="tiles">
    ${areas.map(([name, o]) => html`<div class="tile area" data-test="area" data-area=${name}>
      <h3>${name}</h3><p class="count"><b data-test="count">${o ? o.count : '—'}</b> ${t('inside')}</p>
      ${o && o.subjects && o.subjects.length ? html`<ol class="subjects" data-test="muster-subjects">
        ${o.subjects.map((s) => html`<li><code>${s}</code></li>`)}</ol>` : null}
      <p class="quiet">${t('as_of', { time: o ? localTime(o.ts, ui.lang, tz) : '—' })}</p>
    </div>`)}</div></section>`;
}

// The desk map: a grid laid out by each desk's [row, column] in the config; the state is
// written in each tile as well as coloured.
function Desks({ site, ui, t }) {
  if (!site.desks.size) return html`<section class="desks"><h2>${t('desks')}</h2><p class="quiet">${t('nothing')}</p></section>`;
  const places = deskPlaces(site);
  const columns = Math.max(...places.map((p) => p.column));
  return html`<section class="desks"><h2>${t('desks')}</h2>
    <div class="wide"><div class="deskmap" data-test="deskmap" style=${{ gridTemplateColumns: `repeat(${columns}, minmax(9em, 15em))` }}>
    ${places.map(({ name, row, column }) => {
      const d = site.desks.get(name);
      const state = d ? d.state : 'unknown';
      return html`<div class="tile desk state-${state}" data-test="desk" data-desk=${name} data-state=${state}
        data-row=${row} data-column=${column} style=${{ gridRow: String(row), gridColumn: String(column) }}>
        <h3>${name}</h3><p class="state" data-test="desk-state">${d && d.state ? t('desk_' + d.state) : '—'}</p>
        ${d && d.subject ? html`<p><code>${d.subject}</code></p>` : null}
        ${d && d.since ? html`<p class="quiet">${t('since')} ${localTime(d.since, ui.lang, site.layout.timezone)}</p>` : null}
      </div>`;
    })}</div></div>
    <p class="legend">${DESK_STATES.map((s) => html`<span class="desk state-${s}">${t('desk_' + s)}</span> `)}</p></section>`;
}

function device(d) {
  if (!d) return '—';
  const ids = d.vid ? `${d.vid}:${d.pid}` : d.port || '';
  return d.name ? `${d.name} (${ids})` : ids;
}

// USB: the exceptions in force (retained, usb/<host>/exceptions) and the latest decisions.
function Usb({ site, ui, t }) {
  const tz = site.layout.timezone;
  const exceptions = exceptionsInForce(site);
  const recent = site.usb.slice(0, 10);
  return html`<section class="usb"><h2>${t('usb')}</h2>
    <h3>${t('usb_exceptions')} (${exceptions.length})</h3>
    ${exceptions.length === 0 ? html`<p class="quiet" data-test="no-exceptions">${t('nothing')}</p>` : html`<div class="wide"><table>
      <thead><tr><th>${t('host')}</th><th>${t('device')}</th><th>${t('until')}</th><th>${t('interfaces')}</th>
      <th>${t('granted_by')}</th></tr></thead><tbody>
      ${exceptions.map((e) => html`<tr data-test="exception" data-id=${e.id}><td>${e.host}</td><td><code>${e.match}</code></td>
        <td>${localTime(e.until, ui.lang, tz)}</td><td>${t('interfaces_' + e.interfaces)}</td><td>${e.actor}</td></tr>`)}
      </tbody></table></div>`}
    <h3>${t('usb_decisions')}</h3>
    ${recent.length === 0 ? html`<p class="quiet">${t('nothing')}</p>` : html`<div class="wide"><table><thead><tr>
      <th>${t('time')}</th><th>${t('host')}</th><th>${t('action')}</th><th>${t('device')}</th><th>${t('rule')}</th></tr></thead><tbody>
      ${recent.map((e) => html`<tr data-test="usb-decision" data-action=${e.action} class=${isDenied({ ...e, group: 'usb' }) ? 'denied' : ''}>
        <td>${localTime(e.ts, ui.lang, tz)}</td><td>${e.host}</td><td>${t('usb_' + e.action)}</td>
        <td>${device(e.device)}</td><td><code>${e.rule || '—'}</code></td></tr>`)}
      </tbody></table></div>`}</section>`;
}

function documentOf(d) {
  if (!d || typeof d !== 'object') return '—';
  if (d.name) return d.name;
  return d.hash ? `#${String(d.hash).slice(0, 12)}` : '—';
}

// Printing: the jobs held at each print node (retained print/<node>/queue), oldest first, each
// with how long it has waited and when it expires, and Release and Cancel behind a confirmation,
// signed as every command is and sent to the node that holds the job. "Next for the card" (no
// confirmation: it releases nothing) names the job the supervisor's next card at the printer
// releases instead of the oldest; the node's queue marks it.
function Printing({ site, ui, t, ask }) {
  const queues = printQueues(site);
  const now = Date.now();
  const since = (v) => { const ms = millis(v); return ms === null ? '—' : span(now - ms, ui.lang); };
  const until = (v) => {
    const ms = millis(v);
    if (ms === null) return '—';
    return ms <= now ? t('expiring') : span(ms - now, ui.lang);
  };
  return html`<section class="printing" data-test="printing"><h2>${t('printing')}</h2>
    ${queues.length === 0 ? html`<p class="quiet" data-test="no-print">${t('nothing')}</p>` : queues.map((q) => html`
    <div class="queue" data-test="print-queue" data-node=${q.node}>
      <h3>${q.node}${q.printer ? html` <small>→ ${q.printer}</small>` : null} (${q.jobs.length})</h3>
      ${q.jobs.length === 0 ? html`<p class="quiet">${t('no_jobs')}</p>` : html`<div class="wide"><table><thead><tr>
        <th>${t('job')}</th><th>${t('subject')}</th><th>${t('document')}</th><th>${t('pages')}</th>
        <th>${t('waited')}</th><th>${t('expires_in')}</th><th></th></tr></thead><tbody>
        ${q.jobs.map((j) => html`<tr data-test="print-job" data-node=${q.node} data-job=${j.job}
            data-chosen=${j.job === q.chosen ? 'yes' : null} class=${j.job === q.chosen ? 'chosen' : null}>
          <td>${j.job}${j.job === q.chosen ? html` <small data-test="chosen">${t('chosen')}</small>` : null}</td><td><code>${j.subject || t('unknown_user')}</code></td><td>${documentOf(j.document)}</td>
          <td>${j.pages ?? '—'}</td><td data-test="waited">${since(j.submitted)}</td>
          <td data-test="expires">${until(j.expires)}</td>
          <td><div class="acts">
            <button data-test="print-release" onClick=${() => ask({ text: t('confirm_release', { job: j.job, node: q.node }),
              run: () => ui.actions.printRelease(q.node, j.job) })}>${t('release')}</button>
            <button data-test="print-cancel" onClick=${() => ask({ text: t('confirm_print_cancel', { job: j.job, node: q.node }),
              run: () => ui.actions.printCancel(q.node, j.job) })}>${t('cancel_job')}</button>
            ${j.job === q.chosen ? null : html`<button data-test="print-choose"
              onClick=${() => ui.actions.printChoose(q.node, j.job)}>${t('choose_for_card')}</button>`}</div></td></tr>`)}
        </tbody></table></div>`}</div>`)}</section>`;
}

function Filters({ ui, t, shown, total }) {
  const f = ui.filters;
  const set = ui.actions.setFilter;
  return html`<form class="filters noprint" data-test="filters" onSubmit=${(e) => e.preventDefault()}>
    <select data-test="filter-group" value=${f.group} onChange=${(e) => set('group', e.target.value)}
      aria-label=${t('filter_group')}><option value="">${t('all_groups')}</option>
      ${GROUPS.map((g) => html`<option value=${g}>${t('group_' + g)}</option>`)}</select>
    <label><input type="checkbox" data-test="filter-denied" checked=${f.denied}
      onChange=${(e) => set('denied', e.target.checked)} /> ${t('denied_only')}</label>
    <input type="search" data-test="filter-text" value=${f.text} placeholder=${t('filter_text')}
      aria-label=${t('filter_text')} onInput=${(e) => set('text', e.target.value)} />
    <span class="quiet" data-test="filter-count">${t('shown_of', { shown, total })}</span></form>`;
}

function Events({ site, ui, t }) {
  const tz = site.layout.timezone;
  const events = filtered(site.events, ui.filters);
  return html`<section class="events"><h2>${t('events')}</h2>
    <${Filters} ui=${ui} t=${t} shown=${Math.min(events.length, 100)} total=${site.events.length} />
    <ol class="stream">
    ${events.slice(0, 100).map((e) => {
      let what;
      if (e.group === 'door' && e.kind === 'fire') {
        what = `fire ${e.input} ${e.state}`;
      } else if (e.group === 'door') {
        what = `${word(t, e.direction)} ${word(t, e.result)} (${e.reason})`;
      } else if (e.group === 'usb') {
        what = `USB ${t('usb_' + e.action)} ${device(e.device)}`;
      } else if (e.group === 'print') {
        what = `${t('print_word')} #${e.job} ${t('print_' + e.action)}${e.pages ? ` ${t('pages_n', { n: e.pages })}` : ''}${
          e.reason ? ` (${e.reason})` : ''}${e.actor ? ` — ${e.actor}` : ''}`;
      } else {
        what = `${e.kind}${e.reason ? ` (${e.reason})` : ''}`;
      }
      const mark = isDenied(e) ? 'denied' : isNotable(e) ? 'notable' : '';
      return html`<li data-test="event" data-id=${e.id} data-group=${e.group} data-action=${e.action || e.kind}
        class=${mark}>
        <time>${localTime(e.ts, ui.lang, tz)}</time> <b>${e.where}</b> <span>${what}</span>
        ${e.subject ? html` <code>${e.subject}</code>` : null}</li>`;
    })}</ol></section>`;
}

function Nodes({ site, ui, t }) {
  return html`<section class="nodes"><h2>${t('nodes')}</h2><ul>
    ${nodesOfflineFirst(site).map(([name, s]) => html`<li data-test="node" data-node=${name}
      class=${s ? s.state : 'unknown'}><b>${name}</b> ${word(t, s && s.state)}
      ${s ? html` <span class="quiet">${s.version || ''} ${t('since')} ${localTime(s.started, ui.lang, site.layout.timezone)}</span>` : null}
    </li>`)}</ul></section>`;
}

function Confirm({ asking, t, done }) {
  const [note, setNote] = useState('');
  if (!asking) return null;
  return html`<div class="modal" data-test="confirm"><div class="box" role="dialog" aria-modal="true">
    <p>${asking.text}</p>
    ${asking.note && html`<label>${t('note')} <input data-test="note" value=${note}
      onInput=${(e) => setNote(e.target.value)} maxlength="500" /></label>`}
    <div class="acts"><button data-test="confirm-ok" class="primary"
      onClick=${() => { asking.run(note.trim()); setNote(''); done(); }}>${t('confirm')}</button>
    <button data-test="confirm-cancel" onClick=${() => { setNote(''); done(); }}>${t('cancel')}</button></div>
  </div></div>`;
}

export function App({ site, ui, t, actions }) {
  const [asking, setAsking] = useState(null);
  const props = { site, ui: { ...ui, actions }, t, ask: setAsking };
  return html`<${Header} site=${site} ui=${ui} t=${t} actions=${actions} />
    <${BrokerLogin} ui=${ui} t=${t} actions=${actions} />
    <${KeyBox} ui=${ui} t=${t} actions=${actions} />
    <${CommandLog} ui=${ui} t=${t} />
    <main>
      <${Alarms} ...${props} />
      <section class="doors"><h2>${t('doors')}</h2><div class="tiles">
        ${[...site.doors.keys()].map((name) => html`<${DoorTile} key=${name} name=${name} ...${props} />`)}</div></section>
      <${Areas} ...${props} />
      <${Desks} ...${props} />
      <${Usb} ...${props} />
      <${Printing} ...${props} />
      <${Events} ...${props} />
      <${Nodes} ...${props} />
    </main>
    <${Confirm} asking=${asking} t=${t} done=${() => setAsking(null)} />`;
}
