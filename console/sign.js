// Signed commands from the browser, exactly as `sekisho cmd sign` makes them (docs/mqtt.md,
// daemon/commands.py): the message without sig as canonical JSON (keys sorted, no white space,
// UTF-8, strings escaped as JSON requires and nothing more), signed with Ed25519.
//
// The officer's private key is imported once and kept in IndexedDB as a non-extractable
// CryptoKey: the page can sign with it, but neither the page nor anything injected into it can
// read it back out. Only its name and public key are kept beside it, to show which key signs.

const DB = 'sekisho-console';
const STORE = 'keys';
const SLOT = 'officer';
const ED25519 = { name: 'Ed25519' };
// PKCS #8 of an Ed25519 key is this prefix followed by the 32-byte seed (RFC 8410).
const PKCS8_PREFIX = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

export function canSign() {
  return Boolean(globalThis.isSecureContext && globalThis.crypto && crypto.subtle && globalThis.indexedDB);
}

// Keys sorted by UTF-16 code units, Python by code points: the same for the ASCII names a
// command's fields and arguments have (the node refuses non-ASCII field names).
export function canonical(value) {
  if (Array.isArray(value)) return '[' + value.map(canonical).join(',') + ']';
  if (value !== null && typeof value === 'object') {
    return '{' + Object.keys(value).sort().map((k) => JSON.stringify(k) + ':' + canonical(value[k])).join(',') + '}';
  }
  if (typeof value === 'number' && !Number.isSafeInteger(value)) throw new Error('commands carry whole numbers only');
  // JSON.stringify leaves such a field out of the message it sends: signing it would sign other bytes.
  if (value === undefined || typeof value === 'function') throw new Error('a command field without a value');
  return JSON.stringify(value);
}

function b64(bytes) {
  let s = '';
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s);
}

function unb64(text) {
  const s = atob(text.replace(/-/g, '+').replace(/_/g, '/').replace(/\s+/g, ''));
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

// The PKCS #8 bytes of a key file: a PEM "PRIVATE KEY" block (sekisho cmd keygen, openssl
// genpkey -algorithm ed25519), or the raw 32-byte seed in base64.
export function pkcs8(text) {
  const pem = text.match(/-----BEGIN PRIVATE KEY-----([\s\S]*?)-----END PRIVATE KEY-----/);
  if (pem) return unb64(pem[1]);
  if (/-----BEGIN OPENSSH PRIVATE KEY-----/.test(text)) {
    throw new Error('an OpenSSH key file: make a key with `sekisho cmd keygen`, or give its PKCS #8 PEM form');
  }
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----/.test(text)) throw new Error('an encrypted key: give it unencrypted');
  let raw;
  try { raw = unb64(text.trim()); } catch { raw = null; }
  if (raw && raw.length === 32) return Uint8Array.from([...PKCS8_PREFIX, ...raw]);
  throw new Error('not a PEM private key (-----BEGIN PRIVATE KEY-----) nor a 32-byte key in base64');
}

function db() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
    // Another tab holds an older version open: say so rather than wait for ever.
    req.onblocked = () => reject(new Error('the key store is held by another tab of this console; close it'));
  });
}

async function transact(mode, work) {
  const conn = await db();
  try {
    return await new Promise((resolve, reject) => {
      const tx = conn.transaction(STORE, mode);
      const req = work(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(req.result);
      tx.onerror = () => reject(tx.error);
    });
  } finally {
    conn.close();
  }
}

export function loadKey() {
  return transact('readonly', (s) => s.get(SLOT)).then((k) => k || null);
}

export function forgetKey() {
  return transact('readwrite', (s) => s.delete(SLOT));
}

// Import, keep, and return {name, publicKey, key}. The public key is read from a first,
// extractable import that is then dropped; the key kept is imported again as non-extractable.
export async function importKey(text, name) {
  if (!/^[a-z0-9][a-z0-9.-]{0,63}$/.test(name)) {
    throw new Error('the key name is its name in [commands.keys]: lower-case letters, digits, "." and "-"');
  }
  const der = pkcs8(text);
  try {
    const once = await crypto.subtle.importKey('pkcs8', der, ED25519, true, ['sign']);
    const { x } = await crypto.subtle.exportKey('jwk', once);
    const key = await crypto.subtle.importKey('pkcs8', der, ED25519, false, ['sign']);
    const record = { name, publicKey: b64(unb64(x)), key, imported: new Date().toISOString() };
    await transact('readwrite', (s) => s.put(record, SLOT));
    return record;
  } finally {
    der.fill(0);
  }
}

// A signed command for ``node`` of ``site``: the object to publish on cmd/<node>.
export async function signCommand(keyRecord, { site, node, op, args }) {
  const message = { id: crypto.randomUUID(), ts: new Date().toISOString(), site, node, op, args, key: keyRecord.name };
  const bytes = new TextEncoder().encode(canonical(message));
  const sig = await crypto.subtle.sign(ED25519, keyRecord.key, bytes);
  return { ...message, sig: b64(sig) };
}
