// A shopper journey with the official OrderCloud JavaScript SDK against BASE_URL.
// Prints one JSON document of what the SDK returned (with values that differ per run, such as
// generated IDs and dates, left out) so a test can compare the gateway with the upstream.
const { Configuration, Tokens, Auth, Me, Cart } = require('ordercloud-javascript-sdk');

const [baseApiUrl, clientID, username, password] = process.argv.slice(2);
Configuration.Set({ baseApiUrl, clientID, timeoutInMilliseconds: 10000 });

const out = {};
async function step(name, fn) {
  try {
    out[name] = await fn();
  } catch (e) {
    out[name] = { error: { status: e.status, errorCode: e.errorCode, message: e.message,
                           errors: (e.errors || []).map((x) => [x.ErrorCode, x.Data]) } };
  }
}

(async () => {
  const anon = await Auth.Anonymous(clientID, ['Shopper']);
  Tokens.SetAccessToken(anon.access_token);
  await step('list', async () => {
    const page = await Me.ListProducts({ search: 'watch', sortBy: ['!Name', 'ID'], pageSize: 5,
      filters: { ID: 'p-0*', 'xp.Price': undefined } });
    return { meta: page.Meta, ids: page.Items.map((p) => p.ID) };
  });
  await step('filtered', async () => {
    const page = await Me.ListProducts({ filters: { ID: 'p-001|p-002|p-003', Name: '!zzz*' } });
    return page.Items.map((p) => [p.ID, p.Name, p.PriceSchedule && p.PriceSchedule.PriceBreaks[0].Price]);
  });
  await step('product', async () => (await Me.GetProduct('p-001')).Name);
  await step('missing', async () => Me.GetProduct('no-such-product'));
  await step('promotions', async () => (await Me.ListPromotions()).Items.map((p) => p.ID));
  await step('add', async () => {
    const li = await Cart.CreateLineItem({ ProductID: 'p-001', Quantity: 2 });
    return [li.ProductID, li.Quantity, li.LineTotal];
  });
  await step('badAdd', async () => Cart.CreateLineItem({ ProductID: 'no-such-product', Quantity: 1 }));
  const login = await Auth.Login(username, password, clientID, ['Shopper']);
  await step('badLogin', async () => Auth.Login(username, 'wrong', clientID, ['Shopper']));
  Tokens.SetAccessToken(login.access_token);
  await step('transfer', async () => Me.TransferAnonUserOrder({ anonUserToken: anon.access_token }) || null);
  await step('cart', async () => (await Cart.ListLineItems()).Items.map((li) => [li.ProductID, li.Quantity]));
  await step('submit', async () => {
    const order = await Cart.Submit();
    return [order.Status, order.IsSubmitted, order.Total, order.LineItemCount];
  });
  await step('me', async () => { const me = await Me.Get(); return [me.Username, me.Buyer.ID]; });
  console.log(JSON.stringify(out));
})().catch((e) => { console.error('journey failed:', e && (e.message || e)); process.exit(1); });
