// The page's words in Japanese and English. A missing key shows itself, never an empty string.
const WORDS = {
  title: ['関所 監視コンソール', 'sekisho officer console'],
  alarms: ['未確認・継続中のアラーム', 'Open alarms'],
  no_alarms: ['アラームはありません', 'No open alarms'],
  doors: ['扉', 'Doors'],
  areas: ['在室状況', 'Occupancy'],
  desks: ['席', 'Desks'],
  events: ['イベント', 'Event stream'],
  nodes: ['ノード', 'Nodes'],
  commands: ['コマンドの結果', 'Command answers'],
  severity: ['重要度', 'Severity'], kind: ['種類', 'Kind'], source: ['発生元', 'Source'],
  raised: ['発生', 'Raised'], cleared: ['解消', 'Cleared'], subject: ['対象者', 'Subject'],
  acked: ['確認済み', 'Acknowledged'], acknowledge: ['確認', 'Acknowledge'],
  note: ['メモ（任意）', 'Note (optional)'],
  critical: ['重大', 'critical'], warning: ['警告', 'warning'],
  lock: ['錠', 'Lock'], mode: ['モード', 'Mode'], contact: ['扉の開閉', 'Contact'], alarm: ['アラーム', 'Alarm'],
  last_event: ['最後のイベント', 'Last event'],
  locked: ['施錠', 'locked'], unlocked: ['解錠', 'unlocked'],
  open: ['開', 'open'], closed: ['閉', 'closed'], unknown: ['不明', 'unknown'],
  normal: ['通常', 'normal'], lockdown: ['封鎖', 'lockdown'], free: ['開放', 'free'], emergency: ['非常', 'emergency'],
  forced: ['こじ開け', 'forced'], held_open: ['開放し過ぎ', 'held open'],
  fire: ['火災', 'fire'], strike_failed: ['電気錠の故障', 'strike failed'], pin_lockout: ['暗証番号ロック', 'PIN lockout'],
  lock_failed: ['ロック失敗', 'lock failed'], unlocked_without_card: ['カードなしで解除', 'unlocked without card'],
  tailgating: ['共連れ', 'tailgating'],
  node_offline: ['ノード停止', 'node offline'], duplicate_node: ['ノード名の重複', 'duplicate node name'],
  records_lost: ['記録の欠落', 'records lost'], store_damaged: ['記録の破損', 'store damaged'],
  enrolment_refused: ['登録データの拒否', 'enrolment refused'], sequence_gap: ['記録の抜け', 'records missing'],
  unlock: ['解錠する', 'Unlock'], set_mode: ['モード変更', 'Set mode'],
  granted: ['許可', 'granted'], denied: ['拒否', 'denied'], in: ['入室', 'in'], out: ['退室', 'out'],
  vacant: ['空席', 'vacant'], in_use: ['使用中', 'in use'], away: ['離席', 'away'],
  inside: ['人', 'inside'],
  online: ['オンライン', 'online'], offline: ['オフライン', 'offline'], since: ['開始', 'since'],
  connected: ['ブローカーに接続中', 'connected to the broker'],
  connecting: ['ブローカーに接続しています…', 'connecting to the broker…'],
  disconnected: ['ブローカーから切断されました（再接続します）', 'not connected to the broker (retrying)'],
  readonly: ['閲覧のみ：署名鍵がないため、操作は送信できません。', 'Read-only: no signing key, so no command can be sent.'],
  no_crypto: ['このブラウザ（またはこの接続）では署名できません：https:// か localhost で開いてください。',
    'This browser cannot sign here: open the page over https:// or on localhost.'],
  signing_as: ['署名鍵', 'Signing key'], public_key: ['公開鍵', 'public key'],
  key_file: ['秘密鍵（PEM）', 'Private key (PEM)'], key_name: ['鍵の名前', 'Key name'],
  import_key: ['鍵を取り込む', 'Import key'], forget_key: ['鍵を削除', 'Forget key'],
  key_imported: ['鍵を取り込みました', 'Key imported'],
  confirm: ['実行', 'Confirm'], cancel: ['取消', 'Cancel'],
  confirm_unlock: ['扉 {door} を解錠しますか？', 'Unlock door {door}?'],
  confirm_mode: ['扉 {door} を「{mode}」モードにしますか？', 'Set door {door} to {mode}?'],
  confirm_ack: ['アラーム {id} を確認済みにしますか？', 'Acknowledge alarm {id}?'],
  refused_no_key: ['送信しません：署名鍵がありません（閲覧のみ）', 'Not sent: no signing key (read-only)'],
  waiting: ['応答待ち…', 'waiting for the answer…'], ok: ['成功', 'done'], refused: ['拒否', 'refused'],
  broker_user: ['ブローカーのユーザー', 'Broker user'], broker_password: ['パスワード', 'Password'],
  login: ['接続', 'Connect'],
  unreachable: ['ブローカー {url} に接続できません（再試行中）。WebSockets のリスナーが動いているか、sekisho console --broker-ws が正しいかを確認してください。',
    'Cannot reach the broker at {url} (retrying): check that its WebSockets listener runs and that sekisho console --broker-ws names it.'],
  nothing: ['なし', 'none'],
  // occupancy and the muster list
  muster_list: ['在室者名簿（点呼用）', 'Muster list'], print_muster: ['在室者名簿を印刷', 'Print muster list'],
  printed_at: ['印刷時刻', 'printed'], total_inside: ['在室者の合計', 'total inside'], as_of: ['{time} 時点', 'as of {time}'],
  muster_stale: ['ブローカーに接続していません：この名簿は最新ではない可能性があります。',
    'Not connected to the broker: this list may be out of date.'],
  // the desk map: a desk's states (a door's lock has its own words)
  desk_vacant: ['空席', 'vacant'], desk_in_use: ['使用中', 'in use'], desk_away: ['離席', 'away'],
  desk_locked: ['ロック中', 'locked'], desk_unlocked: ['カードなしでロック解除', 'unlocked without card'],
  // USB
  usb: ['USB', 'USB'], usb_exceptions: ['有効な一時許可', 'Exceptions in force'],
  usb_decisions: ['最近の USB の判定', 'Recent USB decisions'],
  host: ['ホスト', 'Host'], device: ['デバイス', 'Device'], until: ['期限', 'Until'], interfaces: ['インターフェース', 'Interfaces'],
  granted_by: ['許可した人', 'Granted by'], time: ['時刻', 'Time'], action: ['判定', 'Decision'], rule: ['ルール', 'Rule'],
  interfaces_rules: ['ルールで遮断するものは遮断', 'as the rules say'], interfaces_all: ['すべて許可', 'all'],
  usb_allowed: ['許可', 'allowed'], usb_blocked: ['遮断', 'blocked'], usb_exception_granted: ['一時許可', 'exception granted'],
  usb_exception_expired: ['一時許可の終了', 'exception ended'], usb_approval_pending: ['承認待ち', 'approval pending'],
  usb_approval_refused: ['承認されず', 'approval refused'],
  // printing: the jobs held for a supervisor, and their fates
  printing: ['印刷（監督者の承認待ち）', 'Printing (waiting for a supervisor)'],
  no_jobs: ['待っている印刷はありません', 'no job waiting'],
  job: ['ジョブ', 'Job'], document: ['文書', 'Document'], pages: ['枚数', 'Pages'],
  waited: ['待ち時間', 'Waited for'], expires_in: ['自動取消まで', 'Expires in'],
  expiring: ['まもなく取消', 'due now'], unknown_user: ['登録外の利用者', 'unknown user'],
  release: ['印刷を許可', 'Release'], cancel_job: ['印刷を取消', 'Cancel job'],
  choose_for_card: ['次のカードで印刷', 'Next for the card'], chosen: ['次のカード', 'next card'],
  confirm_release: ['{node} のジョブ {job} の印刷を許可しますか？', 'Release job {job} at {node}?'],
  confirm_print_cancel: ['{node} のジョブ {job} を取り消しますか？', 'Cancel job {job} at {node}?'],
  print_word: ['印刷', 'print'], pages_n: ['{n} 枚', '{n} pages'],
  print_held: ['保留', 'held'], print_released: ['許可', 'released'], print_cancelled: ['取消', 'cancelled'],
  print_expired: ['期限切れで取消', 'expired'], print_printed: ['印刷済み', 'printed'],
  print_failed: ['印刷失敗', 'failed'], print_release_refused: ['許可を拒否', 'release refused'],
  print_left: ['利用者が取消', 'withdrawn at CUPS'],
  // event stream filters
  filter_group: ['種類で絞り込み', 'Filter by kind'], all_groups: ['すべて', 'all'],
  group_door: ['扉', 'doors'], group_desk: ['席', 'desks'], group_usb: ['USB', 'USB'], group_print: ['印刷', 'printing'],
  denied_only: ['拒否・遮断のみ', 'denied only'], filter_text: ['場所・対象者で検索', 'Find a place or subject'],
  shown_of: ['{total} 件中 {shown} 件を表示', '{shown} of {total} shown'],
};

export const LANGS = ['ja', 'en'];

export function pickLanguage(configured, stored, browser) {
  if (LANGS.includes(stored)) return stored;
  if (LANGS.includes(configured)) return configured;
  return (browser || '').toLowerCase().startsWith('ja') ? 'ja' : 'en';
}

export function translator(lang) {
  const i = lang === 'ja' ? 0 : 1;
  return (key, values) => {
    let text = Object.hasOwn(WORDS, key) ? WORDS[key][i] : key;
    for (const [k, v] of Object.entries(values || {})) text = text.replace(`{${k}}`, v);
    return text;
  };
}

// A length of time as a person reads it: 45 s, 12 min, 2 h 05 min (negative: none yet).
export function span(ms, lang) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const [h, m] = [Math.floor(s / 3600), Math.floor((s % 3600) / 60)];
  if (lang === 'ja') return h ? `${h}時間${String(m).padStart(2, '0')}分` : m ? `${m}分` : `${s}秒`;
  return h ? `${h} h ${String(m).padStart(2, '0')} min` : m ? `${m} min` : `${s} s`;
}

// A stored time (UTC, RFC 3339) as a person reads it in the site's zone, written the same way
// in both languages: 2026-11-23 16:12:03 (Swedish dates are ISO 8601's).
export function localTime(ts, lang, timeZone) {
  if (!ts) return '—';
  const when = new Date(ts);
  if (Number.isNaN(when.getTime())) return ts;
  const options = { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit',
    second: '2-digit', hour12: false };
  try {
    return when.toLocaleString('sv-SE', { ...options, timeZone });
  } catch {
    return when.toLocaleString('sv-SE', options); // a zone this browser does not know: its own
  }
}
