/**
 * Types of flask_thrillconnect's page script (thrillconnect.js, loaded by
 * `{{ thrillconnect.assets() }}`): `window.ThrillConnect` and the `thrillconnect:*` events it
 * dispatches on `document`. See docs/javascript.rst.
 *
 * A script that uses the global: `/// <reference path=".../thrillconnect.d.ts" />` (or list the
 * file in tsconfig's "files"); the types: `import type { WinDetail } from ".../thrillconnect.js"`.
 * The ES module (thrillconnect.mjs) has its own declarations beside it: thrillconnect.d.mts.
 */

/** The page's relay socket: "idle" until something needs it. */
export type RelayState = "idle" | "connecting" | "open" | "closed";

/** The relay's own link to ThrillConnect, from its last `RelayStatus`. */
export type UpstreamStatus = "connected" | "reconnecting";

/** Sources of ThrillConnect events a page may subscribe to. */
export type EventSource = "thrillpots" | "thrillgate" | "thrilldrops";

/**
 * One subscription: a whole source (`"thrillgate"`), one event of a source
 * (`"thrillgate:PlayerBonusAdded"`), or the same as an object (`eventType` defaults to `"*"`).
 */
export type Subscription =
  | EventSource
  | `${EventSource}:${string}`
  | { readonly source: EventSource; readonly eventType?: string };

/** Upstream data as ThrillConnect sent it (see THRILLCONNECT_API.md). */
export type RawData = { readonly [field: string]: unknown };

/** One pot of a jackpot. */
export interface PotValue {
  readonly id: string;
  /** In `currency` (the viewer's when convertible); null when it could not be converted. */
  readonly value: number | null;
  /** `value` formatted in the page's locale ("£1,234.56"); empty when `value` is null. */
  readonly formatted: string;
  /** In `rawCurrency`, as ThrillConnect sent it. */
  readonly rawValue: number;
}

/** `thrillconnect:update`: the values of one jackpot instance. */
export interface UpdateDetail {
  readonly instanceId: string;
  /** "Active", "Pending", "Paused", "Terminated"; null when the update does not say. */
  readonly status: string | null;
  /** The currency of `pots[].value`: the viewer's when the rates convert, else the jackpot's. */
  readonly currency: string;
  /** The jackpot's own currency. */
  readonly rawCurrency: string;
  readonly pots: readonly PotValue[];
  /** "relay": a live JackpotUpdate; "refresh": read over REST (refresh(), or a resume). */
  readonly via: "relay" | "refresh";
  readonly data: RawData;
}

/** `thrillconnect:win` (cancellable): someone won a pot. */
export interface WinDetail {
  readonly instanceId: string;
  readonly jackpotName: string | null;
  readonly potId: string | null;
  /** The winner's id as ThrillConnect sent it: mask it before showing it to other players. */
  readonly playerId: string | null;
  /** The winner is this page's player. */
  readonly mine: boolean;
  /** In `currency` (the viewer's when convertible). */
  readonly amount: number;
  readonly currency: string;
  readonly formatted: string;
  /** In `rawCurrency` (the jackpot's), as ThrillConnect sent it. */
  readonly rawAmount: number;
  readonly rawCurrency: string;
  /** Milliseconds since the epoch; null when the event has none. */
  readonly timestamp: number | null;
  readonly data: RawData;
}

/** One winner of a raffle draw. */
export interface RaffleWinner {
  readonly playerId: string | null;
  readonly mine: boolean;
  readonly amount: number;
  readonly currency: string;
  readonly formatted: string;
  /** In `rawCurrency` (the winner's own currency), as ThrillConnect sent it. */
  readonly rawAmount: number;
  readonly rawCurrency: string;
}

/** `thrillconnect:raffle-win` (cancellable): a raffle drew its winners. */
export interface RaffleWinDetail {
  readonly instanceId: string;
  readonly jackpotName: string | null;
  /** One of the winners is this page's player. */
  readonly mine: boolean;
  readonly winners: readonly RaffleWinner[];
  readonly timestamp: number | null;
  readonly data: RawData;
}

/** `thrillconnect:optin`, and what optIn() resolves with: the player's opt-in status. */
export interface OptInDetail {
  readonly instanceId: string;
  readonly playerId: string | null;
  readonly optedIn: boolean;
  /** The preferred contribution (jackpot currency, or a fraction for percentage jackpots). */
  readonly contribution: number | null;
  readonly data: RawData;
}

/** `thrillconnect:status`: the socket's state or the upstream status changed. */
export interface StatusDetail {
  readonly state: RelayState;
  readonly upstream: UpstreamStatus | null;
  readonly relayId: string | null;
  readonly lastSeq: number | null;
}

/** `thrillconnect:event`: any ThrillConnect event the relay delivered (see subscribe()). */
export interface RelayEventDetail {
  readonly source: EventSource;
  /** ThrillConnect's `msg_name` ("JackpotUpdate", "PlayerBonusAdded", ...). */
  readonly name: string;
  readonly playerId: string | null;
  readonly seq: number | null;
  readonly timestamp: number | null;
  readonly data: RawData;
}

/** What optIn() takes: exactly one of `instanceId` and `sourceId`. */
export type OptInOptions = (
  | { readonly instanceId: string; readonly sourceId?: undefined }
  | { readonly sourceId: string; readonly instanceId?: undefined }
) & {
  readonly optIn: boolean;
  /** The contribution to choose when opting in (sent as `contribution_value`). */
  readonly contribution?: number;
};

/** The body of a route's error answer. */
export interface ErrorBody {
  readonly error: string;
  readonly message: string;
}

/**
 * What optIn(), refresh() and subscribe() reject with when the portal answered an error (or did
 * not answer). Calls that cannot be made at all reject with a TypeError or RangeError instead.
 */
export interface ThrillConnectError extends Error {
  readonly name: "ThrillConnectError";
  /** The HTTP status; 0 when no answer came ("network_error", "timeout", "relay_unavailable"). */
  readonly status: number;
  /** The route's error code ("unauthorized", "invalid_body", ...). */
  readonly error: string;
  /** The route's JSON answer; null when there was none. */
  readonly body: ErrorBody | null;
}

/** `window.ThrillConnect`. */
export interface ThrillConnectApi {
  readonly state: RelayState;
  readonly lastSeq: number | null;
  readonly relayId: string | null;
  readonly upstream: UpstreamStatus | null;
  /** Opt the player in or out: `POST <prefix>/v1/thrillpots/optin`, with the page's CSRF token. */
  optIn(options: OptInOptions): Promise<OptInDetail>;
  /** Re-read an instance's ticker through the proxy; also dispatches `thrillconnect:update`. */
  refresh(instanceId: string): Promise<UpdateDetail>;
  /**
   * More events over the page's socket (`thrillconnect:event`); no argument just connects.
   * Resolves with every subscription held ("thrillpots:*", ...) once sent.
   */
  subscribe(events?: Subscription | readonly Subscription[]): Promise<string[]>;
}

/** The events on `document`, by name. */
export interface ThrillConnectEventMap {
  "thrillconnect:update": CustomEvent<UpdateDetail>;
  "thrillconnect:win": CustomEvent<WinDetail>;
  "thrillconnect:raffle-win": CustomEvent<RaffleWinDetail>;
  "thrillconnect:optin": CustomEvent<OptInDetail>;
  "thrillconnect:status": CustomEvent<StatusDetail>;
  "thrillconnect:event": CustomEvent<RelayEventDetail>;
}

declare global {
  interface Window {
    readonly ThrillConnect: ThrillConnectApi;
  }
  interface DocumentEventMap extends ThrillConnectEventMap {}
}
