import java.security.KeyStore;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509TrustManager;

public class TlsCheck {
    public static void main(String[] args) throws Exception {
        SSLContext context = SSLContext.getDefault();
        TrustManagerFactory factory = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        factory.init((KeyStore) null);
        X509TrustManager trust = (X509TrustManager) factory.getTrustManagers()[0];
        int issuers = trust.getAcceptedIssuers().length;
        if (issuers < 10) {
            throw new IllegalStateException("default trust store has only " + issuers + " CAs");
        }
        System.out.println("tls-ok protocol=" + context.getProtocol() + " trusted=" + issuers);
    }
}
