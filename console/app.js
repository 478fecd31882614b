// The officer's console: reads config.json, connects to the broker over MQTT-over-WebSockets,
// keeps the site's state from every message under sekisho/v1/<site>/#, and draws it (views.js).
// Commands are signed here with the officer's key (sign.js) and published on cmd/<node>; each
// answer comes back on cmd/<node>/result. Nothing leaves the page unsigned, and without a key
// nothing is sent at all.
import mqtt from './vendor/mqtt/mqtt.esm.js';
import { h, render } from './vendor/preact/preact.mjs';
import { pickLanguage, translator } from './i18n.js';
import { canSign, forgetKey, importKey, loadKey, signCommand } from './sign.js';
import { apply, createSite } from './state.js';
import { App } from './views.js';

const LANG_KEY = 'sekisho.lang';
const USER_KEY = 'sekisho.broker-user';
const PASSWORD_KEY = 'sekisho.broker-password'; // sessionStorage only: gone when the tab closes

function brokerUrl(layout) {
  return layout.broker || `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.hostname}:9001/`;
}

async function main() {
  const layout = await (await fetch('config.json', { cache: 'no-cache' })).json();
  const site = createSite(layout);
  const ui = {
    lang: pickLanguage(layout.lang, localStorage.getItem(LANG_KEY), navigator.language),
    conn: 'connecting', connError: null, refused: false, broker: brokerUrl(layout), key: null, keyError: null, signing: canSign(), log: [],
    filters: { group: '', denied: false, text: '' }, // the event stream's, for as long as the page is open
  };
  const root = document.getElementById('app');
  root.textContent = ''; // the boot line: render() adds to what is there
  let pending = null;
  const draw = () => {
    pending = null;
    document.documentElement.lang = ui.lang;
    document.title = `${translator(ui.lang)('title')} — ${layout.site}`;
    render(h(App, { site, ui, t: translator(ui.lang), actions }), root);
  };
  const redraw = () => { pending = pending || setTimeout(draw, 30); };

  let client = null;
  function connect() {
    if (client) client.end(true);
    const options = { protocolVersion: 5, clean: true, reconnectPeriod: 2000, connectTimeout: 10000 };
    const user = localStorage.getItem(USER_KEY);
    if (user) Object.assign(options, { username: user, password: sessionStorage.getItem(PASSWORD_KEY) || '' });
    const mine = mqtt.connect(ui.broker, options);
    client = mine;
    // A client ended for a new login can still report its close after the new one connected:
    // only the current client's events count.
    const on = (what, handler) => mine.on(what, (...args) => { if (client === mine) handler(...args); });
    on('connect', () => {
      ui.refused = false;
      mine.subscribe(`${layout.base}/#`, { qos: 1 }, (err) => {
        ui.conn = err ? 'disconnected' : 'connected';
        ui.connError = err ? String(err.message || err) : null;
        redraw();
      });
    });
    on('message', (topic, payload) => {
      if (apply(site, topic, new TextDecoder().decode(payload))) redraw();
    });
    for (const what of ['close', 'offline']) on(what, () => { ui.conn = 'disconnected'; redraw(); });
    on('error', (err) => {
      ui.connError = String(err.message || err);
      // The broker answered and wants a user (MQTT 5: 0x86 bad user name or password, 0x87 not
      // authorized; 3.1.1: 4 and 5): only then is a login the answer, not for a broker not reached.
      ui.refused = ui.refused || [4, 5, 134, 135].includes(err.code);
      redraw();
    });
  }

  // A command: refused here without a key; otherwise signed, published, and followed to its answer.
  async function command(node, op, args, label) {
    const entry = { op, node, label, at: new Date().toISOString(), answer: null, error: null };
    ui.log.unshift(entry);
    ui.log.splice(20);
    if (!ui.key) {
      entry.error = 'refused_no_key';
    } else {
      try {
        const message = await signCommand(ui.key, { site: layout.site, node, op, args });
        entry.id = message.id;
        site.sent.set(message.id, entry);
        client.publish(`${layout.base}/cmd/${node}`, JSON.stringify(message), { qos: 1 });
      } catch (err) {
        entry.error = String(err.message || err);
      }
    }
    redraw();
  }

  const actions = {
    setLang(lang) { ui.lang = lang; localStorage.setItem(LANG_KEY, lang); redraw(); },
    setFilter(name, value) { ui.filters = { ...ui.filters, [name]: value }; redraw(); },
    // The muster list alone, on paper (style.css, @media print); drawn first, so that the time
    // it says it was printed is now.
    print() { draw(); window.print(); },
    async importKey(text, name) {
      try {
        ui.key = await importKey(text, name);
        ui.keyError = null;
      } catch (err) {
        ui.keyError = String(err.message || err);
      }
      redraw();
    },
    async forgetKey() { await forgetKey(); ui.key = null; redraw(); },
    login(user, password) {
      localStorage.setItem(USER_KEY, user);
      sessionStorage.setItem(PASSWORD_KEY, password);
      connect();
    },
    ack(alarm, note) {
      // raised: the occurrence the officer saw; the node refuses the ack if it was raised again since.
      const args = { id: alarm.id, ...(alarm.raised ? { raised: alarm.raised } : {}), ...(note ? { note } : {}) };
      command(alarm.node, 'alarm.ack', args, alarm.id);
    },
    unlock(door, node) { command(node, 'door.unlock', { door }, door); },
    setMode(door, node, mode) { command(node, 'door.mode', { door, mode }, `${door} → ${mode}`); },
    printRelease(node, job) { command(node, 'print.release', { job }, `#${job}`); },
    printCancel(node, job) { command(node, 'print.cancel', { job }, `#${job}`); },
    printChoose(node, job) { command(node, 'print.choose', { job }, `#${job}`); },
  };

  // The site first, the key after: a browser whose IndexedDB never answers (some headless
  // modes) still shows everything, read-only, instead of a blank page.
  draw();
  connect();
  if (ui.signing) {
    loadKey().then((key) => { ui.key = ui.key || key; }, (err) => { ui.keyError = String(err.message || err); })
      .finally(redraw);
  }
  // How long each held job has waited moves on between messages: drawn again while jobs wait.
  setInterval(() => { if ([...site.print.values()].some((q) => q.jobs.length)) redraw(); }, 15000);
  window.addEventListener('beforeprint', draw); // the browser's own Print too: the muster's time is now
  globalThis.sekishoConsole = { site, ui }; // for a person at the developer tools, and the tests
}

main().catch((err) => {
  document.getElementById('app').textContent = `sekisho console: ${err.message || err}`;
});
