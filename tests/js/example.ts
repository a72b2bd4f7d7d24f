/*
 * A portal script written against thrillconnect.d.ts: every event and every method, as the
 * docs show them. tests/test_js_types.py type-checks it (tsc --noEmit); nothing runs it.
 * The @ts-expect-error lines must stay errors: they pin what the declarations refuse.
 */
/// <reference path="../../flask_thrillconnect/static/thrillconnect/thrillconnect.d.ts" />
import ThrillConnect, {
  type OptInDetail,
  type RelayState,
  type Subscription,
  type ThrillConnectError,
  type UpdateDetail,
} from "../../flask_thrillconnect/static/thrillconnect/thrillconnect.mjs";

// -- the global and the module are the same object ------------------------------------------
const api = window.ThrillConnect;
const same: boolean = api === ThrillConnect;
const state: RelayState = api.state;
const lastSeq: number | null = api.lastSeq;
const relayId: string | null = api.relayId;
const upstream: "connected" | "reconnecting" | null = api.upstream;

// -- events --------------------------------------------------------------------------------
document.addEventListener("thrillconnect:update", (event) => {
  const detail: UpdateDetail = event.detail;
  for (const pot of detail.pots) {
    const shown: string = pot.formatted;
    const value: number | null = pot.value;
    const raw: number = pot.rawValue;
    void [shown, value, raw, pot.id];
  }
  const via: "relay" | "refresh" = detail.via;
  void [detail.instanceId, detail.status, detail.currency, detail.rawCurrency, via, detail.data];
});

document.addEventListener("thrillconnect:win", (event) => {
  const { mine, formatted, jackpotName, potId, playerId, amount, currency } = event.detail;
  if (mine) {
    event.preventDefault(); // our own celebration instead of the built-in one
    showConfetti(`${formatted} in ${jackpotName ?? "a jackpot"}`);
  }
  const raw: number = event.detail.rawAmount;
  void [potId, playerId, amount, currency, raw, event.detail.rawCurrency, event.detail.timestamp];
  void [event.detail.instanceId, event.detail.data];
});

document.addEventListener("thrillconnect:raffle-win", (event) => {
  if (event.detail.mine) {
    event.preventDefault();
  }
  for (const winner of event.detail.winners) {
    void [winner.playerId, winner.mine, winner.amount, winner.currency, winner.formatted];
    void [winner.rawAmount, winner.rawCurrency];
  }
  void [event.detail.instanceId, event.detail.jackpotName, event.detail.timestamp, event.detail.data];
});

document.addEventListener("thrillconnect:optin", (event) => {
  const detail: OptInDetail = event.detail;
  const contribution: number | null = detail.contribution;
  void [detail.instanceId, detail.playerId, detail.optedIn, contribution, detail.data];
});

document.addEventListener("thrillconnect:status", (event) => {
  const { state: now, upstream: link, relayId: id, lastSeq: seq } = event.detail;
  const live: boolean = now === "open" && link === "connected";
  void [live, id, seq];
});

document.addEventListener("thrillconnect:event", (event) => {
  if (event.detail.source === "thrillgate" && event.detail.name === "PlayerBonusAdded") {
    const bonus: unknown = event.detail.data["bonus_id"];
    void [bonus, event.detail.playerId, event.detail.seq, event.detail.timestamp];
  }
});

// -- methods -------------------------------------------------------------------------------
async function join(sourceId: string): Promise<boolean> {
  try {
    const status = await ThrillConnect.optIn({ sourceId, optIn: true, contribution: 0.2 });
    return status.optedIn;
  } catch (error) {
    const failure = error as ThrillConnectError;
    if (failure.name === "ThrillConnectError" && failure.status === 401) {
      return false; // logged out
    }
    throw new Error(failure.body?.message ?? failure.message);
  }
}

async function leave(instanceId: string): Promise<OptInDetail> {
  return api.optIn({ instanceId, optIn: false });
}

async function reread(instanceId: string): Promise<string[]> {
  const detail = await api.refresh(instanceId);
  return detail.pots.map((pot) => pot.formatted);
}

async function listen(): Promise<string[]> {
  const more: Subscription[] = ["thrillgate", "thrilldrops:CampaignDropWin", { source: "thrillgate" }];
  await api.subscribe(); // just connect
  await api.subscribe("thrillgate:PlayerBonusAdded");
  return api.subscribe(more);
}

function showConfetti(text: string): void {
  document.title = text;
}

// -- what the declarations refuse ----------------------------------------------------------
function refused(): void {
  // @ts-expect-error: optIn needs instanceId or sourceId
  void api.optIn({ optIn: true });
  // @ts-expect-error: not both
  void api.optIn({ instanceId: "a", sourceId: "b", optIn: true });
  // @ts-expect-error: optIn is a boolean
  void api.optIn({ sourceId: "egyptian-gold", optIn: "yes" });
  // @ts-expect-error: refresh takes an instance id
  void api.refresh();
  // @ts-expect-error: not a source ThrillConnect has
  void api.subscribe("thrillbits");
  // @ts-expect-error: read-only state
  api.state = "open";
  document.addEventListener("thrillconnect:win", (event) => {
    // @ts-expect-error: a win has no optedIn
    void event.detail.optedIn;
  });
}

void [same, state, lastSeq, relayId, upstream, join, leave, reread, listen, refused];
