// What the page shows, in the order an officer needs it: open alarms, doors, occupancy, desks,
// the event stream, the nodes. Pure rendering of the site (state.js) and the page's own state
// (ui); everything that acts goes through ``actions`` (app.js).
import { h } from './vendor/preact/preact.mjs';
import { useState } from './vendor/preact/hooks.mjs';
import htm from './vendor/htm/htm.mjs';
import { LANGS, localTime } from './i18n.js';
import { alarmNode, doorNode, nodesOfflineFirst, openAlarms } from './state.js';

const html = htm.bind(h);
const MODES = ['normal', 'lockdown', 'free', 'emergency'];

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
    ${alarms.length === 0 ? html`<p class="quiet">${t('no_alarms')}</p>` : html`<table><thead><tr>
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
      </tbody></table>`}</section>`;
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
      <dt>${t('last_event')}</dt><dd>${last ? html`${localTime(last.ts, ui.lang, tz)} ${word(t, last.direction)}
        ${word(t, last.result)} (${last.reason})` : '—'}</dd>
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

function Areas({ site, t }) {
  return html`<section class="areas"><h2>${t('areas')}</h2><div class="tiles">
    ${[...site.areas.entries()].map(([name, o]) => html`<div class="tile area" data-test="area" data-area=${name}>
      <h3>${name}</h3><p class="count"><b data-test="count">${o ? o.count : '—'}</b> ${t('inside')}</p>
      ${o && o.subjects && o.subjects.length ? html`<p class="subjects">${o.subjects.map((s) => html`<code>${s}</code> `)}</p>` : null}
    </div>`)}</div></section>`;
}

function Desks({ site, ui, t }) {
  if (!site.desks.size) return html`<section class="desks"><h2>${t('desks')}</h2><p class="quiet">${t('nothing')}</p></section>`;
  return html`<section class="desks"><h2>${t('desks')}</h2><div class="tiles">
    ${[...site.desks.entries()].map(([name, d]) => html`<div class="tile desk state-${d ? d.state : 'unknown'}"
      data-test="desk" data-desk=${name}><h3>${name}</h3><p data-test="desk-state">${word(t, d && d.state)}</p>
      ${d && d.subject ? html`<p><code>${d.subject}</code></p>` : null}
      ${d && d.since ? html`<p class="quiet">${t('since')} ${localTime(d.since, ui.lang, site.layout.timezone)}</p>` : null}
    </div>`)}</div></section>`;
}

function Events({ site, ui, t }) {
  const tz = site.layout.timezone;
  return html`<section class="events"><h2>${t('events')}</h2><ol class="stream">
    ${site.events.slice(0, 100).map((e) => {
      let what;
      if (e.group === 'door' && e.kind === 'fire') {
        what = `fire ${e.input} ${e.state}`;
      } else if (e.group === 'door') {
        what = `${word(t, e.direction)} ${word(t, e.result)} (${e.reason})`;
      } else if (e.group === 'usb') {
        what = `USB ${e.action} ${(e.device && (e.device.name || `${e.device.vid}:${e.device.pid}`)) || ''}`;
      } else {
        what = `${e.kind}${e.reason ? ` (${e.reason})` : ''}`;
      }
      return html`<li data-test="event" data-id=${e.id} data-group=${e.group} class=${e.result === 'denied' ? 'denied' : ''}>
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
      <${Events} ...${props} />
      <${Nodes} ...${props} />
    </main>
    <${Confirm} asking=${asking} t=${t} done=${() => setAsking(null)} />`;
}
