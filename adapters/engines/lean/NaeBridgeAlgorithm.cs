/*
 * NaeBridgeAlgorithm: a LEAN algorithm that takes orders from the NAE execution node over ZeroMQ
 * and reports LEAN's order events back. It has no strategy of its own: the node decides, LEAN
 * executes through whichever brokerage the LEAN deployment is configured with.
 *
 * Protocol: adapters/engines/lean/protocol.py is the definition; the classes below mirror it field
 * for field. One ZeroMQ frame = one UTF-8 JSON object with a "type" field.
 *   node -> LEAN: place, cancel, status
 *   LEAN -> node: hello, heartbeat, order_event, status_report
 *
 * Threads (LEAN's own issues, notes/peers.md):
 *   - One thread owns the NetMQ DEALER and is the only one that sends or receives on it: concurrent
 *     sends on a NetMQ socket crash ("Cannot close an uninitialised Msg", Lean#9790). Everyone else
 *     hands frames to it through a thread-safe queue.
 *   - Commands are executed on the algorithm thread (DrainCommands, from OnData and a scheduled
 *     event every second), never on the socket thread.
 *   - OnOrderEvent may run on LEAN's transaction thread: it only reads the maps under a lock and
 *     queues a frame.
 * Restarts: LEAN does not restore custom order tags on restart (Lean#5777). Every client order id
 * sent here is kept in the ObjectStore with the brokerage's order ids; after a restart the open
 * orders LEAN reloads from the brokerage get their client order ids back by broker id, and the
 * status report lists every client order id ever received (those LEAN no longer has as "Unknown").
 * A client order id received twice is never placed twice.
 *
 * Parameters (config.json "parameters" or `lean live --parameter`):
 *   nae-bridge-endpoint  the node bridge's ROUTER, default tcp://127.0.0.1:5570
 *   nae-symbols          comma-separated equity tickers to subscribe at start (orders need a price)
 *
 * Build: NetMQ (the version LEAN's own QuantConnect.Messaging references) and Newtonsoft.Json are
 * part of LEAN's distribution. See docs/lean.md. Not compiled or run on the machine it was written on.
 */

using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using NetMQ;
using NetMQ.Sockets;
using Newtonsoft.Json;
using Newtonsoft.Json.Linq;
using QuantConnect.Data;
using QuantConnect.Orders;

namespace QuantConnect.Algorithm.CSharp
{
    // ------------------------------------------------------------------ protocol mirror

    public class PlaceOrderCommand
    {
        [JsonProperty("client_order_id")] public string ClientOrderId = "";
        [JsonProperty("symbol")] public string Symbol = "";
        [JsonProperty("order_type")] public string OrderType = "";
        [JsonProperty("quantity")] public decimal Quantity;
        [JsonProperty("notional")] public decimal Notional;
        [JsonProperty("limit_price")] public decimal LimitPrice;
        [JsonProperty("stop_price")] public decimal StopPrice;
    }

    public class CancelOrderCommand
    {
        [JsonProperty("client_order_id")] public string ClientOrderId = "";
    }

    public class StatusQueryCommand
    {
        [JsonProperty("query_id")] public long QueryId;
    }

    public class HelloMessage
    {
        [JsonProperty("type")] public string Type = "hello";
        [JsonProperty("session_id")] public string SessionId = "";
        [JsonProperty("protocol")] public int Protocol = NaeBridgeAlgorithm.ProtocolVersion;
        [JsonProperty("algorithm")] public string Algorithm = "NaeBridgeAlgorithm";
        [JsonProperty("live_mode")] public bool LiveMode;
    }

    public class HeartbeatMessage
    {
        [JsonProperty("type")] public string Type = "heartbeat";
        [JsonProperty("session_id")] public string SessionId = "";
        [JsonProperty("seq")] public long Seq;
        [JsonProperty("utc_ms")] public long UtcMs;
    }

    public class OrderEventMessage
    {
        [JsonProperty("type")] public string Type = "order_event";
        [JsonProperty("session_id")] public string SessionId = "";
        [JsonProperty("order_id")] public int OrderId;
        [JsonProperty("event_id")] public int EventId;
        [JsonProperty("client_order_id")] public string ClientOrderId = "";
        [JsonProperty("symbol")] public string Symbol = "";
        [JsonProperty("status")] public string Status = "";
        [JsonProperty("fill_quantity")] public decimal FillQuantity;
        [JsonProperty("fill_price")] public decimal FillPrice;
        [JsonProperty("order_quantity")] public decimal OrderQuantity;
        [JsonProperty("message")] public string Message = "";
        [JsonProperty("utc_ms")] public long UtcMs;
    }

    public class OrderStateEntry
    {
        [JsonProperty("client_order_id")] public string ClientOrderId = "";
        [JsonProperty("order_id")] public int OrderId = -1;
        [JsonProperty("symbol")] public string Symbol = "";
        [JsonProperty("status")] public string Status = "";
        [JsonProperty("quantity")] public decimal Quantity;
        [JsonProperty("filled_quantity")] public decimal FilledQuantity;
        [JsonProperty("broker_ids")] public List<string> BrokerIds = new List<string>();
    }

    public class StatusReportMessage
    {
        [JsonProperty("type")] public string Type = "status_report";
        [JsonProperty("session_id")] public string SessionId = "";
        [JsonProperty("query_id")] public long QueryId;
        [JsonProperty("orders")] public List<OrderStateEntry> Orders = new List<OrderStateEntry>();
    }

    // ------------------------------------------------------------------ the algorithm

    public class NaeBridgeAlgorithm : QCAlgorithm
    {
        public const int ProtocolVersion = 1;
        private const string StoreKey = "nae-bridge/orders";
        private const string UnknownStatus = "Unknown";
        private static readonly TimeSpan HeartbeatEvery = TimeSpan.FromSeconds(1);

        private string _endpoint = "tcp://127.0.0.1:5570";
        private string _sessionId = "";
        private readonly ConcurrentQueue<string> _inbox = new ConcurrentQueue<string>();   // node -> algorithm thread
        private readonly ConcurrentQueue<string> _outbox = new ConcurrentQueue<string>();  // anyone -> socket thread
        private Thread _socketThread;
        private volatile bool _running;
        private bool _restored;

        private readonly object _lock = new object();
        private readonly Dictionary<int, string> _coidByOrderId = new Dictionary<int, string>();
        private readonly Dictionary<string, int> _orderIdByCoid = new Dictionary<string, int>();
        private Dictionary<string, List<string>> _sent = new Dictionary<string, List<string>>();  // persisted

        public override void Initialize()
        {
            _endpoint = GetParameter("nae-bridge-endpoint") ?? _endpoint;
            var tickers = GetParameter("nae-symbols") ?? "";
            foreach (var ticker in tickers.Split(new[] { ',' }, StringSplitOptions.RemoveEmptyEntries))
            {
                AddEquity(ticker.Trim(), Resolution.Second);
            }
            _sessionId = Guid.NewGuid().ToString("N");
            _sent = LoadSent();
            Schedule.On(DateRules.EveryDay(), TimeRules.Every(TimeSpan.FromSeconds(1)), DrainCommands);

            Enqueue(new HelloMessage { SessionId = _sessionId, LiveMode = LiveMode });
            _running = true;
            _socketThread = new Thread(SocketLoop) { IsBackground = true, Name = "nae-bridge-socket" };
            _socketThread.Start();
        }

        public override void OnData(Slice slice)
        {
            DrainCommands();
        }

        public override void OnEndOfAlgorithm()
        {
            _running = false;
            _socketThread?.Join(TimeSpan.FromSeconds(5));
            NetMQConfig.Cleanup(false);
        }

        // ---------------------------------------------------------------- the socket thread (only sender)

        private void SocketLoop()
        {
            using (var dealer = new DealerSocket())
            {
                dealer.Options.Linger = TimeSpan.Zero;
                dealer.Options.HeartbeatInterval = TimeSpan.FromSeconds(1);
                dealer.Options.HeartbeatTimeout = TimeSpan.FromSeconds(3);
                dealer.Connect(_endpoint);
                long seq = 0;
                var nextBeat = DateTime.UtcNow;
                while (_running)
                {
                    string frame;
                    if (dealer.TryReceiveFrameString(TimeSpan.FromMilliseconds(10), out frame))
                    {
                        _inbox.Enqueue(frame);
                        while (dealer.TryReceiveFrameString(TimeSpan.Zero, out frame))
                        {
                            _inbox.Enqueue(frame);
                        }
                    }
                    string outgoing;
                    while (_outbox.TryDequeue(out outgoing))
                    {
                        dealer.SendFrame(outgoing);
                    }
                    var now = DateTime.UtcNow;
                    if (now >= nextBeat)
                    {
                        seq += 1;
                        dealer.SendFrame(JsonConvert.SerializeObject(
                            new HeartbeatMessage { SessionId = _sessionId, Seq = seq, UtcMs = UnixMs(now) }));
                        nextBeat = now + HeartbeatEvery;
                    }
                }
            }
        }

        private void Enqueue(object message)
        {
            _outbox.Enqueue(JsonConvert.SerializeObject(message));
        }

        // ---------------------------------------------------------------- commands (algorithm thread)

        private void DrainCommands()
        {
            if (!_restored)
            {
                RestoreTags();  // the brokerage's open orders are loaded by now
                _restored = true;
            }
            string frame;
            while (_inbox.TryDequeue(out frame))
            {
                try
                {
                    var message = JObject.Parse(frame);
                    var type = (string)message["type"];
                    if (type == "place") PlaceFromNode(message.ToObject<PlaceOrderCommand>());
                    else if (type == "cancel") CancelFromNode(message.ToObject<CancelOrderCommand>());
                    else if (type == "status") ReportStatus(message.ToObject<StatusQueryCommand>());
                    else Log("nae-bridge: unknown command type " + type);
                }
                catch (Exception err)
                {
                    Error("nae-bridge: bad command: " + err.Message);
                }
            }
        }

        private void PlaceFromNode(PlaceOrderCommand c)
        {
            lock (_lock)
            {
                if (_sent.ContainsKey(c.ClientOrderId))
                {
                    Log("nae-bridge: " + c.ClientOrderId + " was placed before; not placing it twice");
                    return;
                }
                _sent[c.ClientOrderId] = new List<string>();
                SaveSent();
            }
            var ticker = c.Symbol;
            if (!Securities.ContainsKey(ticker))
            {
                AddEquity(ticker, Resolution.Second);
            }
            var symbol = Securities[ticker].Symbol;
            var quantity = c.Quantity;
            if (quantity == 0m && c.Notional != 0m)
            {
                var price = Securities[symbol].Price;
                if (price <= 0m)
                {
                    Refused(c, "no price for " + ticker + " to size a notional order");
                    return;
                }
                quantity = Math.Truncate(c.Notional / price);
            }
            if (quantity == 0m)
            {
                Refused(c, "order quantity is zero");
                return;
            }
            OrderTicket ticket;
            switch (c.OrderType)
            {
                case "Market":
                    ticket = MarketOrder(symbol, quantity, asynchronous: true, tag: c.ClientOrderId);
                    break;
                case "Limit":
                    ticket = LimitOrder(symbol, quantity, c.LimitPrice, tag: c.ClientOrderId);
                    break;
                case "StopMarket":
                    ticket = StopMarketOrder(symbol, quantity, c.StopPrice, tag: c.ClientOrderId);
                    break;
                case "StopLimit":
                    ticket = StopLimitOrder(symbol, quantity, c.StopPrice, c.LimitPrice, tag: c.ClientOrderId);
                    break;
                default:
                    Refused(c, "unknown order type " + c.OrderType);
                    return;
            }
            lock (_lock)
            {
                _coidByOrderId[ticket.OrderId] = c.ClientOrderId;
                _orderIdByCoid[c.ClientOrderId] = ticket.OrderId;
            }
            var response = ticket.SubmitRequest != null ? ticket.SubmitRequest.Response : null;
            if (ticket.Status == OrderStatus.Invalid && response != null && response.IsError)
            {
                // LEAN refused it in its pre-order checks: there may be no OrderEvent for it
                Enqueue(new OrderEventMessage
                {
                    SessionId = _sessionId, OrderId = ticket.OrderId > 0 ? ticket.OrderId : -1, EventId = 0,
                    ClientOrderId = c.ClientOrderId, Symbol = ticker, Status = "Invalid",
                    OrderQuantity = quantity, Message = response.ErrorMessage ?? "", UtcMs = UnixMs(DateTime.UtcNow),
                });
            }
        }

        private void Refused(PlaceOrderCommand c, string why)
        {
            Enqueue(new OrderEventMessage
            {
                SessionId = _sessionId, OrderId = -1, EventId = 0, ClientOrderId = c.ClientOrderId,
                Symbol = c.Symbol, Status = "Invalid", OrderQuantity = c.Quantity, Message = why,
                UtcMs = UnixMs(DateTime.UtcNow),
            });
        }

        private void CancelFromNode(CancelOrderCommand c)
        {
            int orderId;
            lock (_lock)
            {
                if (!_orderIdByCoid.TryGetValue(c.ClientOrderId, out orderId))
                {
                    Log("nae-bridge: cancel for " + c.ClientOrderId + ": no such order in this session");
                    return;
                }
            }
            Transactions.CancelOrder(orderId, "nae-bridge cancel");
        }

        private void ReportStatus(StatusQueryCommand q)
        {
            var report = new StatusReportMessage { SessionId = _sessionId, QueryId = q.QueryId };
            lock (_lock)
            {
                foreach (var entry in _sent)
                {
                    int orderId;
                    var order = _orderIdByCoid.TryGetValue(entry.Key, out orderId) ? Transactions.GetOrderById(orderId) : null;
                    if (order == null)
                    {
                        report.Orders.Add(new OrderStateEntry
                        {
                            ClientOrderId = entry.Key, Status = UnknownStatus, BrokerIds = entry.Value.ToList(),
                        });
                        continue;
                    }
                    var ticket = Transactions.GetOrderTicket(orderId);
                    report.Orders.Add(new OrderStateEntry
                    {
                        ClientOrderId = entry.Key,
                        OrderId = orderId,
                        Symbol = order.Symbol.Value,
                        Status = order.Status.ToString(),
                        Quantity = order.Quantity,
                        FilledQuantity = ticket != null ? Math.Abs(ticket.QuantityFilled) : 0m,
                        BrokerIds = order.BrokerId != null ? order.BrokerId.ToList() : entry.Value.ToList(),
                    });
                }
            }
            Enqueue(report);
        }

        // ---------------------------------------------------------------- events (any LEAN thread)

        public override void OnOrderEvent(OrderEvent e)
        {
            string coid;
            lock (_lock)
            {
                if (!_coidByOrderId.TryGetValue(e.OrderId, out coid))
                {
                    var order = Transactions.GetOrderById(e.OrderId);
                    coid = order != null && !string.IsNullOrEmpty(order.Tag) && _sent.ContainsKey(order.Tag) ? order.Tag : null;
                    if (coid == null)
                    {
                        return;  // not an order the node placed (manual, or from another strategy)
                    }
                    _coidByOrderId[e.OrderId] = coid;
                    _orderIdByCoid[coid] = e.OrderId;
                }
                if (e.Status == OrderStatus.Submitted)
                {
                    var order = Transactions.GetOrderById(e.OrderId);
                    if (order != null && order.BrokerId != null && order.BrokerId.Count > 0)
                    {
                        _sent[coid] = order.BrokerId.ToList();
                        SaveSent();
                    }
                }
            }
            Enqueue(new OrderEventMessage
            {
                SessionId = _sessionId,
                OrderId = e.OrderId,
                EventId = e.Id,
                ClientOrderId = coid,
                Symbol = e.Symbol.Value,
                Status = e.Status.ToString(),
                FillQuantity = e.FillQuantity,
                FillPrice = e.FillPrice,
                OrderQuantity = e.Quantity,
                Message = e.Message ?? "",
                UtcMs = UnixMs(e.UtcTime),
            });
        }

        // ---------------------------------------------------------------- restart: tags back by broker id

        private void RestoreTags()
        {
            lock (_lock)
            {
                var byBrokerId = new Dictionary<string, string>();
                foreach (var entry in _sent)
                {
                    foreach (var brokerId in entry.Value)
                    {
                        byBrokerId[brokerId] = entry.Key;
                    }
                }
                foreach (var order in Transactions.GetOpenOrders())
                {
                    string coid = null;
                    if (!string.IsNullOrEmpty(order.Tag) && _sent.ContainsKey(order.Tag))
                    {
                        coid = order.Tag;
                    }
                    else if (order.BrokerId != null)
                    {
                        foreach (var brokerId in order.BrokerId)
                        {
                            if (byBrokerId.TryGetValue(brokerId, out coid)) break;
                        }
                    }
                    if (coid != null)
                    {
                        _coidByOrderId[order.Id] = coid;
                        _orderIdByCoid[coid] = order.Id;
                    }
                }
            }
        }

        private Dictionary<string, List<string>> LoadSent()
        {
            if (!ObjectStore.ContainsKey(StoreKey))
            {
                return new Dictionary<string, List<string>>();
            }
            return JsonConvert.DeserializeObject<Dictionary<string, List<string>>>(ObjectStore.Read(StoreKey))
                ?? new Dictionary<string, List<string>>();
        }

        private void SaveSent()
        {
            ObjectStore.Save(StoreKey, JsonConvert.SerializeObject(_sent));
        }

        private static long UnixMs(DateTime utc)
        {
            return (long)(utc - new DateTime(1970, 1, 1, 0, 0, 0, DateTimeKind.Utc)).TotalMilliseconds;
        }
    }
}
